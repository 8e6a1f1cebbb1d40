"""Chaos suite: a seeded workload through the local stack while Cronofy (the emulator) answers 429s,
5xx and timeouts, SQS delivers duplicates and out of order, and handlers crash mid-batch; a user
disconnects and reconnects while their old cleanup job is delivered twice and later replayed, old
messages are redriven as from a DLQ, and a teammate tries to connect a calendar account someone
already connected. After the system settles, every invariant the product promises must hold. The
seed is printed, so a failure replays exactly: CHAOS_SEEDS=<seed> make chaos.

Short run in `make test`; `make chaos` runs longer (CHAOS_SEEDS, CHAOS_USERS, CHAOS_CHANGES) and with the
full heavy calendar (CHAOS_HEAVY_EVENTS=2000).
"""

from __future__ import annotations

import os
import random
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from calsync import wiring
from calsync.milestones import event_id_for
from calsync.store import Store
from localdev import browser
from localdev.builders import connect, in_days, iso, milestone
from localdev.stack import DevStack

SEEDS = [int(s) for s in os.environ.get("CHAOS_SEEDS", "7").split(",")]
USERS = int(os.environ.get("CHAOS_USERS", "5"))
CHANGES = int(os.environ.get("CHAOS_CHANGES", "120"))
# The last user's own appointments, one every 8 minutes from tomorrow: 400 in `make test` (8 pages of the
# emulator's 50, through day 3's first hour, which check_heavy_calendar reads; this halves the run's CPU),
# 2,000 in `make chaos` (11 days, several weekly busy items). At least 368 reach that hour.
HEAVY_EVENTS = int(os.environ.get("CHAOS_HEAVY_EVENTS", "400"))
assert HEAVY_EVENTS >= 368, "check_heavy_calendar reads day 3's first hour: CHAOS_HEAVY_EVENTS >= 368"


class Crashes:
    """Handlers die mid-batch: after the calendar write landed, before it was recorded."""

    def __init__(self, rng: random.Random, probability: float):
        self.rng, self.p, self.count = rng, probability, 0
        self.enabled = True
        self._put_ref = Store.put_ref

    def install(self, monkeypatch):
        crashes = self

        def put_ref(store, ref):
            if crashes.enabled and crashes.rng.random() < crashes.p:
                crashes.count += 1
                raise RuntimeError("chaos: Lambda crashed mid-batch")
            return crashes._put_ref(store, ref)

        monkeypatch.setattr(Store, "put_ref", put_ref)


def faults(stack, rng: random.Random) -> None:
    if rng.random() < 0.5:
        stack.fail_webhooks(rng.randint(1, 3))  # API Gateway/Lambda hiccup: Cronofy retries the pushes
    choice = rng.random()
    if choice < 0.3:
        stack.emulator.add_fault(path_prefix="/v1/", status=429, retry_after=1, count=rng.randint(1, 3))
    elif choice < 0.55:
        stack.emulator.add_fault(path_prefix="/v1/", status=rng.choice([500, 502, 503]), count=rng.randint(1, 3))
    elif choice < 0.7:
        stack.emulator.add_fault(path_prefix="/v1/batch", mode="timeout", latency_ms=1300, count=1)


def deliver(stack, messages: list[dict], rng: random.Random) -> int:
    """At-least-once, any order: shuffle, duplicate a fifth, send, drain."""
    copies = messages + [m for m in messages if rng.random() < 0.2]
    rng.shuffle(copies)
    for m in copies:
        stack.send("MilestoneEventsQueue", m)
    return len(copies) - len(messages)


class Chaos:
    """One seeded run: the users, the SolarNexus changes sent, and what each phase leaves to check.
    Every random choice comes from one generator, in a fixed order, so a seed replays exactly."""

    org = "org_sunbright"
    rounds = 6

    def __init__(self, stack, seed: int):
        self.stack, self.seed = stack, seed
        self.rng = random.Random(seed)
        self.users = [f"u_{i}" for i in range(USERS)]
        self.accounts: dict[str, dict] = {}
        self.sessions: dict = {}
        self.calendars: dict[str, str] = {}
        self.sent: list[dict] = []  # every milestone message, for the DLQ redrive
        self.truth: dict[str, dict] = {}  # milestone id -> its newest message
        self.versions: Counter = Counter()
        self.duplicates = self.replays = 0
        self.moved: dict[tuple[str, str], tuple[str, str]] = {}
        self.cleanup_job: dict | None = None
        self.deactivation: dict | None = None

    # ---- setup ----
    def connect_everyone(self) -> None:
        emulator = self.stack.emulator
        for u in self.users:
            self.accounts[u] = emulator.add_calendar_account("google", f"{u}@example.com", calendars=[
                {"name": "Work", "primary": True}, {"name": "Holidays", "readonly": True}])
            if u == self.users[-1]:  # one heavy calendar: thousands of short appointments (issue 10, finding 4)
                work = self.accounts[u]["calendars"][0]["calendar_id"]
                first = in_days(1, 0)
                for i in range(HEAVY_EVENTS):
                    at = first + timedelta(minutes=8 * i)
                    emulator.add_external_event(work, f"Call {i}", iso(at), iso(at + timedelta(minutes=5)))
            self.sessions[u] = self.stack.browser(u, self.org)
            self.calendars[u] = connect(self.stack, self.sessions[u], "google", self.accounts[u])

    def share_an_account(self) -> dict:
        """A teammate authorizes an account already connected (a shared mailbox): refused, nothing revoked."""
        sharer = self.stack.browser("u_sharer", self.org)
        shared = browser.connect(sharer, self.stack.base_url, "google", self.accounts[self.users[0]]["profile_id"])
        assert shared == {"calendar_sync": "error", "reason": "account_in_use"}, shared
        return shared

    # ---- SolarNexus changes, in rounds, each under fresh faults ----
    def change(self) -> dict:
        rng = self.rng
        mid = f"ms_{rng.randrange(max(4, CHANGES // 4))}"
        self.versions[mid] += 1
        version = self.versions[mid]
        assignees = rng.sample(self.users, rng.choice([1, 1, 2]))
        kind = rng.random()
        if kind < 0.1:
            msg = milestone(mid, version, assignees, status="cancelled")
        elif kind < 0.15:
            msg = {"type": "milestone.deleted", "message_id": f"d-{mid}-{version}",
                   "occurred_at": iso(datetime.now(UTC)), "org_id": self.org, "milestone_id": mid,
                   "version": version}
        else:
            start = in_days(1 + rng.randrange(40), 8 + rng.randrange(9))
            msg = milestone(mid, version, assignees, start)
        self.truth[mid] = msg
        return msg

    def run_rounds(self, crashes: Crashes, returning: str, deactivated: str) -> None:
        stack, rng = self.stack, self.rng
        for r in range(self.rounds):
            batch = [self.change() for _ in range(CHANGES // self.rounds)]
            self.duplicates += deliver(stack, batch, rng)
            self.sent += batch
            faults(stack, rng)
            # the users' own events: Cronofy pushes `change` (retried, duplicated, reordered)
            owner = rng.choice(self.users)
            day = in_days(1 + rng.randrange(30), 7)
            stack.emulator.add_external_event(self.calendars[owner], "Own", iso(day), iso(day.replace(hour=8)))
            self.round_events(r, returning, deactivated)
            stack.drain(timeout=300)
            if r == 3:
                # The disconnected user connects again (quietly: the consent page is not under test here)
                crashes.enabled = False
                stack.emulator.clear_faults()
                assert wiring.store().get_connection(returning) is None
                self.calendars[returning] = connect(stack, self.sessions[returning], "google",
                                                    self.accounts[returning])
                crashes.enabled = True

    def round_events(self, r: int, returning: str, deactivated: str) -> None:
        """What happens besides the changes in round r: a secret rotation, a disconnection whose
        cleanup job is delivered twice, a deactivation, DLQ redrives."""
        stack = self.stack
        if r == 3:  # a client secret rotation in the middle: Cronofy signs with both secrets ...
            stack.emulator.begin_secret_rotation(f"chaos-rotated-secret-{self.seed}")
        if r == 4:
            stack.use_client_secret(f"chaos-rotated-secret-{self.seed}")  # ... we switch ...
        if r == 2:
            self.sessions[returning].delete(stack.url("/v1/calendar/connection"))
            [self.cleanup_job] = stack.queue_messages("CleanupQueue")
            for _ in range(2):  # delivered twice
                stack.send("CleanupQueue", self.cleanup_job)
        if r == 3:
            self.deactivation = {"type": "user.deactivated", "message_id": "chaos-1",
                                 "occurred_at": iso(datetime.now(UTC)), "org_id": self.org, "user_id": deactivated}
            stack.send("UserEventsQueue", self.deactivation)
        if r >= 4:
            # A DLQ redrive mid-run: the old cleanup job (the user has connected again since), the
            # deactivation, and a sample of older milestone messages, as they were first sent
            redrive = [("CleanupQueue", self.cleanup_job), ("UserEventsQueue", self.deactivation)]
            redrive += [("MilestoneEventsQueue", m) for m in self.rng.sample(self.sent, min(10, len(self.sent)))]
            for queue, body in redrive:
                stack.send(queue, body)
            self.replays += len(redrive)

    # ---- calendar-side reschedules (the user drags events) ----
    def users_move_events(self, staying: list[str]) -> None:
        emulator = self.stack.emulator
        emulator.advance_clock(5)
        for u in staying:
            ours = [e for e in emulator.events(self.calendars[u]) if e["managed"] and not e["deleted"]]
            for event in self.rng.sample(ours, min(2, len(ours))):
                start = in_days(50 + self.rng.randrange(5), 10)
                emulator.move_event(self.calendars[u], event_id=event["event_id"], start=iso(start),
                                    end=iso(start.replace(hour=11)))
                self.moved[(u, event["event_id"])] = (iso(start), iso(start.replace(hour=11)))

    # ---- invariants ----
    def expected(self, u: str) -> dict[str, tuple[str, str]]:
        """The user's SolarNexus events as the newest messages (and the user's own moves) say."""
        expected = {}
        for mid, msg in self.truth.items():
            m = msg.get("milestone")
            if m and m["status"] == "scheduled" and u in m["assignee_user_ids"]:
                expected[event_id_for(mid)] = self.moved.get((u, event_id_for(mid)), (m["start"], m["end"]))
        return expected

    def calendars_checked(self, leaving: list[str]) -> tuple[list, int, int]:
        """(calendars that differ from the truth, duplicate events, events left after leaving)."""
        mismatches, duplicate_events, left_after_leaving = [], 0, 0
        for u in self.users:
            events = [e for e in self.stack.emulator.events(self.calendars[u]) if e["managed"] and not e["deleted"]]
            ids = Counter(e["event_id"] for e in events)
            duplicate_events += sum(c - 1 for c in ids.values())
            if u in leaving:
                left_after_leaving += len(events)
                continue
            actual = {e["event_id"]: (e["start"], e["end"]) for e in events}
            expected = self.expected(u)
            if actual != expected:
                mismatches.append((u, sorted(set(actual.items()) ^ set(expected.items()))[:4]))
        return mismatches, duplicate_events, left_after_leaving


def push_statistics(pushes: list[dict]) -> dict[str, int]:
    return {"attempts": len(pushes), "retried": sum(1 for n in pushes if n["attempt"] > 1),
            "failed_attempts": sum(1 for n in pushes if n["error"]),
            "duplicated": sum(1 for n in pushes if n.get("duplicate")),
            "held_back": sum(1 for n in pushes if n.get("held_back")),
            "two_signatures": sum(1 for n in pushes if "," in n["signature"])}


def check_heavy_calendar(chaos: Chaos, leaving: list[str]) -> None:
    """The heavy calendar: its busy periods are stored and served (one item per week, none too big)."""
    heavy = chaos.users[-1]
    if heavy in leaving or wiring.store().get_connection(heavy) is None:
        return
    day = in_days(3, 0)
    busy = chaos.sessions[heavy].get(chaos.stack.url(f"/v1/orgs/{chaos.org}/busy"), params={
        "user_ids": heavy, "from": iso(day), "to": iso(day + timedelta(hours=1))})
    assert busy.status_code == 200 and len(busy.json()["users"][heavy]) == 8, busy.text


@pytest.mark.parametrize("seed", SEEDS)
def test_chaos(seed, monkeypatch, capsys):
    monkeypatch.setenv("HTTP_TIMEOUT_SECONDS", "1")
    # the emulator's realism is on (asynchronous writes, outside-only last_modified, push retries,
    # duplicates and reordering), its push randomness seeded with the run
    with DevStack(emulator_options={"rate_limit": (50, 500), "realism": {"push_seed": seed}}) as stack:
        chaos = Chaos(stack, seed)
        chaos.connect_everyone()
        shared = chaos.share_an_account()
        crashes = Crashes(chaos.rng, 0.04)
        crashes.install(monkeypatch)
        # one disconnects and connects again (its old cleanup job is replayed), one is deactivated
        returning, deactivated = chaos.rng.sample(chaos.users, 2)
        leaving = [deactivated]
        chaos.run_rounds(crashes, returning, deactivated)
        chaos.users_move_events([u for u in chaos.users if u not in leaving])
        faults(stack, chaos.rng)
        stack.drain(timeout=300)
        stack.emulator.complete_secret_rotation()  # ... and the old one is retired

        # ---- settle: no more chaos; one scheduled reconcile pass ----
        crashes.enabled = False
        stack.emulator.clear_faults()
        stack.drain(timeout=300)
        # the scheduled pass comes long after our writes (Cronofy has applied them all by then)
        from calsync import drift

        monkeypatch.setattr(drift, "RECENT_WRITE", drift.timedelta(0))
        heal = stack.invoke("ReconcilerFunction", {"all": True})
        stack.drain(timeout=300)

        # ---- invariants ----
        changes = stack.queue_messages("CalendarChangesQueue")
        reported = {(m["user_id"], event_id_for(m["milestone_id"])) for m in changes
                    if m["type"] == "milestone.rescheduled_on_calendar"}
        mismatches, duplicate_events, left_after_leaving = chaos.calendars_checked(leaving)
        lost_moves = [k for k in chaos.moved if k not in reported]
        dead = sum(len(stack.queue_messages(q)) for q in ("MilestoneEventsDLQ", "UserEventsDLQ", "CleanupDLQ",
                                                             "NotificationsDLQ"))
        stats = stack.emulator.stats
        repairs = {k: v for k, v in heal.items() if v and k not in ("users", "cronofy_requests", "busy_refreshed")}
        faults_hit = sum(1 for e in stack.emulator.request_log if e.get("fault"))
        pushes = stack.emulator.notifications
        push_stats = push_statistics(pushes)
        with capsys.disabled():
            print(f"\nchaos seed={seed} users={USERS} changes={sum(chaos.versions.values())} "
                  f"duplicates_delivered={chaos.duplicates} crashes={crashes.count} faults_hit={faults_hit} "
                  f"cronofy_429_for_rate={stats['rate_limited']} max_per_s={stats['max_per_second']} "
                  f"max_per_min={stats['max_per_minute']}")
            print(f"  calendars_wrong={len(mismatches)} duplicate_events={duplicate_events} "
                  f"events_left_after_leaving={left_after_leaving} moves={len(chaos.moved)} "
                  f"moves_lost={len(lost_moves)} dead_letters={dead} reconciler_repairs={repairs} "
                  f"replays={chaos.replays} shared_account_refused={shared['reason'] == 'account_in_use'}")
            print(f"  cronofy pushes: {push_stats} channels_given_up="
                  f"{sum(1 for c in stack.emulator.state.channels.values() if c.closed_reason)}")
        assert mismatches == [], mismatches
        assert duplicate_events == 0
        assert left_after_leaving == 0
        assert lost_moves == []
        assert dead == 0
        assert stack.emulator.stats["rate_limited"] == 0  # no request over Cronofy's limit reached it
        assert all(wiring.store().get_connection(u) is None for u in leaving)
        assert wiring.store().get_connection(returning).state.value == "connected"
        assert wiring.store().get_connection("u_sharer") is None
        # the realistic Cronofy really was in play: retries, duplicates and a rotation
        assert push_stats["retried"] > 0 and push_stats["duplicated"] > 0 and push_stats["two_signatures"] > 0
        assert all(n["error"] is None for n in pushes if n["attempt"] == stack.emulator.realism.push_max_attempts)
        check_heavy_calendar(chaos, leaving)
