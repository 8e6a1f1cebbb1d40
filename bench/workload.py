"""The seeded week for bench/week.py: who works at the installer, which milestones exist, and what
happens in which working hour. Also the core platform's side of the conversation (the model of every
milestone, versions, applying calendar reschedules) and the naive integration's request count, both
derived from the workload's operations, never from what our service did.

A week = 5 days x 8 working hours = 40 slots. Each slot the core platform publishes that hour's
milestone messages (all at once: SQS then hands them to milestone push 10 at a time), users move
SolarNexus events on their calendars and add events of their own, and schedulers open the busy view.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

SLOTS = 40
ORGS = (("org_sunbright", 24), ("org_helios", 16), ("org_voltwise", 10))
PROVIDERS = ("google", "microsoft", "apple")
NAMES = ("Site Survey", "Design Review", "Permit Inspection", "Panel Install", "Electrical Inspection",
         "Battery Install", "Utility Interconnection", "PTO Walkthrough")
FIRST = ("Ana", "Raj", "Lee", "Maria", "Tom", "Priya", "Jon", "Keiko", "Omar", "Lucia", "Ben", "Fatima")
LAST = ("Ruiz", "Patel", "Wong", "Garcia", "Novak", "Okafor", "Smith", "Tanaka", "Haddad", "Rossi")
STREETS = ("Main St", "Elm Ct", "Oak St", "Sunset Blvd", "Olive Ave", "Cedar Ln", "Palm Dr")


@dataclass
class User:
    user_id: str
    org_id: str
    provider: str
    email: str
    calendars: list[dict]  # emulator seeding spec
    choose: str | None  # calendar name to pick when asked
    own_events: str | None  # "before" (on the calendar before connecting), "during" (added in the week), None


@dataclass
class Milestone:
    milestone_id: str
    org_id: str
    name: str
    customer: str
    address: str
    assignees: list[str]
    start: datetime | date
    hours: int
    all_day: bool
    version: int = 0  # last version the core platform published (0: not yet)

    def times(self) -> tuple[str, str]:
        """start/end as the calendar shows them (UTC seconds, or dates)."""
        if self.all_day:
            return self.start.isoformat(), (self.start + timedelta(days=self.hours)).isoformat()
        return _z(self.start), _z(self.start + timedelta(hours=self.hours))


@dataclass
class Slot:
    new: list[str] = field(default_factory=list)  # milestone ids first published this hour
    reschedules: list[str] = field(default_factory=list)
    solo_reschedules: list[str] = field(default_factory=list)  # sent one by one: end-to-end delay samples
    reassignments: list[str] = field(default_factory=list)
    calendar_moves: int = 0
    own_events: list[str] = field(default_factory=list)  # users adding events of their own
    busy_views: list[str] = field(default_factory=list)  # org ids
    disconnects: list[str] = field(default_factory=list)
    deactivations: list[str] = field(default_factory=list)


@dataclass
class Week:
    seed: int
    now: datetime
    users: list[User]
    milestones: dict[str, Milestone]
    before: list[str]  # milestone ids published before anyone connects
    slots: list[Slot]


def _z(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _users() -> list[User]:
    users: list[User] = []
    for org_id, size in ORGS:
        for i in range(size):
            n = len(users)
            user_id = f"u_{org_id.removeprefix('org_')}_{i:02d}"
            calendars = [{"name": "Calendar", "primary": True}]
            choose = None
            if n % 7 == 3:  # a second writable calendar: the user is asked and picks "Installs"
                calendars.append({"name": "Installs"})
                choose = "Installs"
            if n % 4 == 0:
                calendars.append({"name": "Holidays", "readonly": True})
            own = "before" if n % 5 == 0 else "during" if n % 5 == 1 else None
            users.append(User(user_id, org_id, PROVIDERS[n % 3], f"{user_id}@{org_id}.example", calendars, choose,
                              own))
    return users


def _milestones(rng: random.Random, now: datetime, users: list[User], count: int) -> dict[str, Milestone]:
    by_org: dict[str, list[str]] = {}
    for u in users:
        by_org.setdefault(u.org_id, []).append(u.user_id)
    weights = [size for _, size in ORGS]
    ms: dict[str, Milestone] = {}
    for k in range(count):
        org_id = rng.choices([o for o, _ in ORGS], weights)[0]
        assignees = rng.sample(by_org[org_id], 2 if rng.random() < 0.25 else 1)
        all_day = rng.random() < 0.08
        day = rng.randint(-3, 35)
        if all_day:
            start: datetime | date = (now + timedelta(days=day)).date()
            hours = 1
        else:
            start = (now + timedelta(days=day)).replace(hour=rng.randint(15, 23))
            hours = rng.randint(1, 6)
        mid = f"ms_{k:05d}"
        customer = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        address = f"{rng.randint(1, 999)} {rng.choice(STREETS)}, Fresno, CA"
        ms[mid] = Milestone(mid, org_id, rng.choice(NAMES), customer, address, assignees, start, hours, all_day)
    return ms


def _schedule_changes(rng: random.Random, slots: list[Slot], ids: list[str], first_slot: dict[str, int],
                      reschedules: int, reassignments: int, solo_samples: int) -> None:
    """Reschedules (some measured on their own) and reassignments, each of a milestone that exists by then."""
    def existing_by(s: int) -> list[str]:
        return [m for m in ids if first_slot[m] < s]

    pool_cache: dict[int, list[str]] = {}
    solo = set(rng.sample(range(reschedules), solo_samples)) if reschedules >= solo_samples else set()
    for r in range(reschedules):
        s = rng.randrange(1, SLOTS - 1)
        pool = pool_cache.setdefault(s, existing_by(s))
        mid = rng.choice(pool)
        (slots[s].solo_reschedules if r in solo else slots[s].reschedules).append(mid)
    done: set[str] = set()
    for _ in range(reassignments):
        s = rng.randrange(2, SLOTS - 1)
        pool = [m for m in pool_cache.setdefault(s, existing_by(s)) if m not in done]
        mid = rng.choice(pool)
        done.add(mid)
        slots[s].reassignments.append(mid)


def build(seed: int = 6, milestones: int = 3000, before_share: float = 0.5, reschedules: int = 600,
          calendar_moves: int = 150, reassignments: int = 20, disconnects: int = 5, deactivations: int = 1,
          busy_views: int = 200, solo_samples: int = 50) -> Week:
    rng = random.Random(seed)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    users = _users()
    ms = _milestones(rng, now, users, milestones)
    ids = list(ms)
    cut = int(milestones * before_share)
    before, during = ids[:cut], ids[cut:]
    slots = [Slot() for _ in range(SLOTS)]
    first_slot: dict[str, int] = dict.fromkeys(before, -1)
    for mid in during:
        s = rng.randrange(SLOTS - 1)
        slots[s].new.append(mid)
        first_slot[mid] = s
    _schedule_changes(rng, slots, ids, first_slot, reschedules, reassignments, solo_samples)
    for _ in range(calendar_moves):
        slots[rng.randrange(1, SLOTS - 1)].calendar_moves += 1
    for u in users:
        if u.own_events == "during":
            slots[rng.randrange(1, SLOTS - 1)].own_events.append(u.user_id)
    orgs = [o for o, _ in ORGS]
    for v in range(busy_views):
        slots[v * SLOTS // busy_views].busy_views.append(orgs[v % len(orgs)])
    leaving = rng.sample([u.user_id for u in users], disconnects + deactivations)
    slots[-1].disconnects = leaving[:disconnects]
    slots[-1].deactivations = leaving[disconnects:]
    return Week(seed, now, users, ms, before, slots)


# ---- the core platform ------------------------------------------------------------------------------------

def upserted(m: Milestone) -> dict:
    """milestone.upserted for the milestone's current state (ARCHITECTURE §3)."""
    start, end = m.times()
    return {
        "type": "milestone.upserted", "message_id": str(uuid.uuid4()), "occurred_at": _z(datetime.now(UTC)),
        "org_id": m.org_id,
        "milestone": {
            "milestone_id": m.milestone_id, "version": m.version, "project_id": f"prj_{m.milestone_id}",
            "name": m.name, "assignee_user_ids": list(m.assignees), "start": start, "end": end,
            "all_day": m.all_day, "timezone": "America/Los_Angeles", "status": "scheduled",
            "customer": {"name": m.customer, "phone": "+1 555 0100",
                         "email": f"{m.customer.split()[0].lower()}@example.com", "address": m.address},
            "notes": "Gate code 4411", "url": f"https://app.solarnexus.com/projects/prj_{m.milestone_id}",
        },
    }


def user_deactivated(user_id: str, org_id: str) -> dict:
    return {"type": "user.deactivated", "message_id": str(uuid.uuid4()), "occurred_at": _z(datetime.now(UTC)),
            "org_id": org_id, "user_id": user_id}


# ---- the naive integration -----------------------------------------------------------------------------

class Naive:
    """Requests a one-call-per-operation integration would make for the same workload:
    - an event write (create, update, delete) on a calendar = 1 request;
    - disconnect / deactivation = 1 delete per SolarNexus event on the calendar, plus closing the channel
      and revoking (2, as ours);
    - each scheduler view = 1 live free/busy request per connected user shown (14 days: one page);
    - each push notification = a full re-read of the user's events: ceil(events / page size) pages;
    - connecting = the same handshake as ours (token exchange, calendars, channel), then 1 write per
      event already scheduled.
    Where a choice exists the count is the smaller one (assignees whose event does not change get no
    write on a reassignment), so the ratio to naive is conservative."""

    def __init__(self, page_size: int):
        self.page_size = page_size
        self.by_kind: dict[str, int] = {}

    def add(self, kind: str, n: int) -> None:
        self.by_kind[kind] = self.by_kind.get(kind, 0) + n

    def full_read(self, events_on_calendars: int) -> int:
        return max(1, math.ceil(events_on_calendars / self.page_size))

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())
