"""`make invoke FN=<function> EVENT=events/<file>.json`: one function, one sample event, on the local stack.

What `sam local invoke` does with Docker and a deployed stack's resources, done in one process: the
local stack starts (moto, the Cronofy emulator, the real handlers), is seeded with the demo's people
(`localdev.local.seed`), and is then prepared for the event, so the event does what its name says
instead of meeting an empty table: a connected calendar, a channel whose token and HMAC match, a
signed single-use OAuth state from a real consent, a backfill run waiting for its plan... Values in
the file that only the prepared stack can know (the channel token, the state, a run id, dates in the
past) are replaced, and each replacement is printed. Then the function runs once with the event and
its answer is printed as JSON.

    make invoke FN=WebhookIntakeFunction EVENT=events/webhook-change.json
    make invoke FN=webhook-intake EVENT=events/webhook-change.json      # a short name works too

An event file without a preparation (one of your own) is invoked as it is, on the seeded stack.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
ORG = "org_sunbright"


def _z(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def function_id(name: str, functions: dict[str, Any]) -> str:
    """The template's logical id from a logical id or a short name: CalendarApiFunction, CalendarApi,
    calendar-api, calendar_api (case and separators do not matter)."""

    def norm(text: str) -> str:
        return text.lower().replace("-", "").replace("_", "").removesuffix("function")

    for fid, fn in functions.items():
        if norm(name) in (norm(fid), norm(fn.module.split(".")[1])):
            return fid
    raise SystemExit(f"make invoke: no function {name!r}; one of: {', '.join(sorted(functions))}")


@dataclass
class Scene:
    """The local stack being prepared for one event, and what was changed in the event."""

    stack: Any
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def account(self, email: str) -> dict[str, Any]:
        return next(p for p in self.stack.emulator.profiles() if p["email"] == email)

    def session(self, user_id: str, roles: list[str] | None = None):
        return self.stack.browser(user_id, ORG, roles)

    def connect(self, user_id: str, provider: str, email: str, calendar: str | None = None) -> Any:
        """The user connects the account through the real flow (consent page, callback, choice) and
        the backfill runs (unless the stack plays the state machine itself)."""
        from calsync import wiring
        from localdev import browser

        account = self.account(email)
        session = self.session(user_id)
        outcome = browser.connect(session, self.stack.base_url, provider, account["profile_id"])
        if outcome.get("calendar_sync") == "choose_calendar":
            chosen = next(c for c in account["calendars"] if c["calendar_name"] == calendar)
            session.put(self.stack.url("/v1/calendar/connection"),
                        json={"calendar_id": chosen["calendar_id"]}).raise_for_status()
        self.drain()
        self.note(f"{user_id} connected {email}" + (f" ({calendar})" if calendar else ""))
        return wiring.store().get_connection(user_id)

    def jane(self) -> Any:
        return self.connect("u_jane", "google", "jane.smith@example.com", "Installs")

    def miguel(self) -> Any:
        return self.connect("u_miguel", "microsoft", "miguel@sunbright.example")

    def drain(self) -> None:
        if self.stack.run_state_machines:
            self.stack.drain()
        else:  # no execution will finish: deliver what is queued, without waiting for them
            self.stack.settle()
            while self.stack.pump():
                self.stack.settle()


Prepare = Callable[[Scene, dict[str, Any]], dict[str, Any]]
PREPARE: dict[str, Prepare] = {}
# Events whose stack plays the state machine's steps itself (executions started, never run).
STEPS_BY_HAND = {"backfill-plan", "backfill-chunk", "backfill-finalize", "backfill-fail"}


def prepares(*names: str) -> Callable[[Prepare], Prepare]:
    def register(fn: Prepare) -> Prepare:
        for name in names:
            PREPARE[name] = fn
        return fn
    return register


def _set_query(event: dict[str, Any], query: str) -> None:
    event["rawQueryString"] = query
    event["queryStringParameters"] = dict(parse_qsl(query)) or None


def _set_body(event: dict[str, Any], body: dict[str, Any]) -> None:
    event["body"] = json.dumps(body)
    event["isBase64Encoded"] = False


# ---- the calendar API --------------------------------------------------------------------------------


@prepares("api-get-connection", "api-list-calendars", "api-disconnect", "api-org-connections",
          "api-org-calendar-health")
def _connected_jane(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    scene.jane()
    return event


@prepares("api-select-calendar")
def _switch(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    scene.jane()
    primary = next(c for c in scene.account("jane.smith@example.com")["calendars"] if c["calendar_primary"])
    _set_body(event, json.loads(event["body"]) | {"calendar_id": primary["calendar_id"]})
    scene.note(f"body.calendar_id <- Jane's primary calendar {primary['calendar_id']} (she is on Installs: a switch)")
    return event


@prepares("api-org-busy")
def _busy(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    scene.jane()
    conn = scene.miguel()
    start = (datetime.now(UTC) + timedelta(days=1)).replace(hour=17, minute=0, second=0, microsecond=0)
    scene.stack.emulator.add_external_event(conn.calendar_id, "Dentist", _z(start), _z(start + timedelta(hours=1)))
    scene.drain()
    scene.note(f"Miguel's own appointment on his calendar: {_z(start)} for an hour")
    query = dict(parse_qsl(event["rawQueryString"])) | {
        "from": _z(start.replace(hour=0)), "to": _z(start.replace(hour=0) + timedelta(days=7))}
    _set_query(event, urlencode(query, safe=",:"))
    scene.note(f"query from/to <- the week from {query['from']} (the file's dates are in the past)")
    return event


@prepares("api-org-availability")
def _availability(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    scene.jane()
    scene.miguel()
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    monday = today + timedelta(days=7 - today.weekday())
    body = json.loads(event["body"]) | {"from": _z(monday), "to": _z(monday + timedelta(days=5))}
    _set_body(event, body)
    scene.note(f"body from/to <- next Monday {body['from']} .. {body['to']} (the file's dates are in the past)")
    return event


# ---- the OAuth callback: a real consent, stopped before the browser reaches us -------------------------


def _consented_redirect(scene: Scene, user_id: str, provider: str, email: str, allow: bool) -> tuple[str, str | None]:
    """(query of Cronofy's redirect to our callback, the browser-binding cookie) after a real consent."""
    from calsync.oauth_state import BINDING_COOKIE
    from localdev import browser

    account = scene.account(email)
    session = scene.session(user_id)
    url = browser.start_connect(session, scene.stack.base_url, provider)
    redirect = browser.consent(session, url, account["profile_id"], allow=allow, follow=False)
    location = redirect.headers["Location"]
    assert urlsplit(location).path == "/v1/calendar/oauth/callback", location
    scene.note(f"{user_id} started connecting {email} and clicked {'Allow' if allow else 'Deny'} on the consent page")
    return urlsplit(location).query, session.cookies.get(BINDING_COOKIE)


@prepares("oauth-callback", "oauth-callback-denied")
def _oauth(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    from calsync.oauth_state import BINDING_COOKIE

    allow = "error=" not in event["rawQueryString"]
    # Jane's home account has one writable calendar: it is chosen at once (connected).
    query, cookie = _consented_redirect(scene, "u_jane", "google", "jane.smith.home@example.com", allow)
    _set_query(event, query)
    scene.note("query <- Cronofy's redirect (" + ("code and " if allow else "error and ") + "the signed state)")
    if cookie:
        event["cookies"] = [f"{BINDING_COOKIE}={cookie}"]
        scene.note(f"cookies <- the browser's {BINDING_COOKIE}")
    return event


# ---- the webhook: a channel whose token and HMAC match ------------------------------------------------------


@prepares("webhook-change", "webhook-verification")
def _webhook(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    from calsync import wiring

    conn = scene.jane()
    token = wiring.connection_service().channel_token("u_jane")
    body = json.loads(event["body"])
    body["channel"]["channel_id"] = conn.channel_id
    body["channel"]["callback_url"] = scene.stack.url(f"/v1/webhooks/cronofy/{token}")
    body["channel"].get("filters", {}).pop("calendar_ids", None)
    if "changes_since" in body["notification"]:
        body["notification"]["changes_since"] = _z(datetime.now(UTC) - timedelta(minutes=5))
    raw = json.dumps(body, separators=(",", ":")).encode()
    event["body"] = raw.decode()
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/v1/webhooks/cronofy/{token}"
    event["pathParameters"] = {"channel_token": token}
    signature = base64.b64encode(hmac.new(os.environ["CRONOFY_CLIENT_SECRET"].encode(), raw, hashlib.sha256).digest())
    event["headers"] = event["headers"] | {"cronofy-hmac-sha256": signature.decode(), "content-length": str(len(raw))}
    scene.note(f"channel_id <- Jane's channel {conn.channel_id}; path token <- her channel token; "
               "cronofy-hmac-sha256 <- the body signed with the local client secret")
    return event


# ---- SQS consumers ----------------------------------------------------------------------------------------


def _bodies(event: dict[str, Any]) -> list[dict[str, Any]]:
    return [json.loads(r["body"]) for r in event["Records"]]


def _set_bodies(event: dict[str, Any], bodies: list[dict[str, Any]]) -> None:
    for record, body in zip(event["Records"], bodies, strict=True):
        record["body"] = json.dumps(body)


@prepares("cleanup-user-deactivated")
def _deactivated(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    scene.miguel()
    return event


@prepares("cleanup-disconnect-requested")
def _disconnect_requested(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    """The message the route itself queues when Jane clicks Disconnect, taken off the queue unhandled."""
    scene.jane()
    scene.session("u_jane").delete(scene.stack.url("/v1/calendar/connection")).raise_for_status()
    queued = scene.stack.queue_messages("CleanupQueue")
    assert len(queued) == 1, queued
    _set_bodies(event, [queued[0]])
    scene.note("Jane clicked Disconnect (DELETE /v1/calendar/connection); the record's body <- the message it queued")
    return event


@prepares("milestone-push-batch")
def _milestones(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    from localdev import demo

    scene.jane()
    bodies = _bodies(event)
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=16, minute=0, second=0, microsecond=0)
    for body in bodies:
        if body["type"] == "milestone.upserted":
            m = body["milestone"]
            length = datetime.fromisoformat(m["end"]) - datetime.fromisoformat(m["start"])
            if m.get("all_day"):
                m["start"], m["end"] = start.date().isoformat(), (start + length).date().isoformat()
            else:
                m["start"], m["end"] = _z(start), _z(start + length)
            start += timedelta(days=1)
        else:  # what is deleted was on the calendar before
            scene.stack.send("MilestoneEventsQueue", demo._milestone(
                body["milestone_id"], body["version"] - 1, "Old visit", ["u_jane"], start, 1, "Ana Ruiz", "1 Elm St"))
            scene.note(f"{body['milestone_id']} (version {body['version'] - 1}) is on Jane's calendar first")
    scene.drain()
    _set_bodies(event, bodies)
    scene.note("upserted milestones' start/end <- the coming days (the file's are in the past)")
    return event


@prepares("notification-processor-batch")
def _notifications(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    jane, miguel = scene.jane(), scene.miguel()
    emu = scene.stack.emulator
    bodies = _bodies(event)
    by_user = {"u_jane": jane, "u_miguel": miguel}
    for body in bodies:
        conn = by_user[body["user_id"]]
        body["channel_id"] = conn.channel_id
        if body.get("changes_since"):
            body["changes_since"] = _z(datetime.now(UTC) - timedelta(minutes=5))
        if body["notification_type"] == "profile_disconnected":
            emu.revoke_account(conn.cronofy_sub)
            scene.note(f"{body['user_id']} revoked SolarNexus's access at the provider")
    start = (datetime.now(UTC) + timedelta(days=4)).replace(hour=17, minute=0, second=0, microsecond=0)
    emu.move_event(jane.calendar_id, event_id="sn-ms_survey", start=_z(start), end=_z(start + timedelta(hours=2)))
    emu.settle()
    scene.stack.queue_messages("NotificationsQueue")  # the push's own job: the file's batch stands for it
    scene.stack.queue_messages("CalendarChangesQueue")
    scene.note(f"Jane moved her site survey to {_z(start)} on her calendar; channel ids <- theirs")
    _set_bodies(event, bodies)
    return event


@prepares("reconciler-schedule")
def _reconciler(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    from calsync import wiring

    conn = scene.jane()
    # The daily check is due: her last one was over a day ago (as after a quiet day).
    ago = datetime.now(UTC) - timedelta(hours=25)
    wiring.store().update_connection(conn.user_id, lambda c: c.model_copy(update={"last_checked_at": ago}))
    scene.note("Jane's daily check is overdue")
    return event


# ---- the backfill: this stack plays the state machine's steps -------------------------------------------


def _run(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    from calsync import wiring

    conn = scene.jane()
    run = (wiring.store().get_backfill(conn.user_id) or {}).get("run_id")
    assert run, "no backfill run started"
    scene.note(f"run_id <- Jane's backfill run {run} (started when she chose Installs; its state machine waits)")
    return event | {"run_id": run, "org_id": ORG} if "org_id" in event else event | {"run_id": run}


@prepares("backfill-plan")
def _plan(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    return _run(scene, event)


@prepares("backfill-chunk", "backfill-finalize", "backfill-fail")
def _planned(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    event = _run(scene, event)
    plan = scene.stack.invoke("BackfillFunction", {"action": "plan", "user_id": event["user_id"], "org_id": ORG,
                                                   "run_id": event["run_id"], "previous_calendar_id": None})
    scene.note(f"planned: {plan}")
    if event["action"] == "finalize":
        for chunk in plan["chunks"]:
            scene.stack.invoke("BackfillFunction", {"action": "chunk", "user_id": event["user_id"],
                                                    "run_id": event["run_id"], "chunk": chunk})
        scene.note(f"chunks {plan['chunks']} written")
    return event


# ---- Enterprise Connect ------------------------------------------------------------------------------------


def _enterprise_authorized(scene: Scene, admin_id: str) -> None:
    from localdev import demo_enterprise
    from localdev import enterprise_flow as ec

    admin = scene.session(admin_id, ["admin", "member"])
    result = ec.outcome(ec.authorize(admin, scene.stack.base_url, ORG, demo_enterprise.DOMAIN))
    assert result == {"enterprise_connect": "connected"}, result
    scene.note(f"{admin_id} authorized Enterprise Connect for {ORG} ({demo_enterprise.DOMAIN})")


@prepares("enterprise-connect-members")
def _members(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    from localdev import demo_enterprise

    _enterprise_authorized(scene, "u_admin")
    body = json.loads(event["body"])
    for member in body["members"]:
        local = member["email"].split("@")[0]
        member["email"] = f"{local}@{demo_enterprise.DOMAIN}"
    _set_body(event, body)
    scene.note(f"members' e-mail domain <- {demo_enterprise.DOMAIN} (the seeded Workspace)")
    return event


@prepares("enterprise-connect-end", "enterprise-connect-status")
def _authorized(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    _enterprise_authorized(scene, "u_admin")
    return event


@prepares("enterprise-connect-member-callback")
def _member_callback(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    """Cronofy's callback for one member, held back at the emulator and handed to the function."""
    from localdev import demo_enterprise
    from localdev import enterprise_flow as ec

    _enterprise_authorized(scene, "u_admin")
    deliveries = scene.stack.emulator.enterprise.deliveries
    deliveries.hold()
    try:
        admin = scene.session("u_admin", ["admin", "member"])
        asked = ec.request_members(admin, scene.stack.base_url, ORG, [("u_ana", f"ana@{demo_enterprise.DOMAIN}")])
        assert asked.status_code == 202, asked.text
        held = deliveries.take_held()
    finally:
        deliveries.hold(False)
    assert len(held) == 1, held
    _url, body = held[0]
    event["body"] = body.decode()
    scene.note(f"u_admin asked for u_ana (ana@{demo_enterprise.DOMAIN}); body <- Cronofy's callback for her "
               "(a code and the signed state), held back at the emulator")
    return event


@prepares("enterprise-connect-callback")
def _enterprise_callback(scene: Scene, event: dict[str, Any]) -> dict[str, Any]:
    from localdev import demo_enterprise
    from localdev import enterprise_flow as ec

    admin = scene.session("u_admin", ["admin", "member"])
    redirect = ec.authorize(admin, scene.stack.base_url, ORG, demo_enterprise.DOMAIN, follow=False)
    location = redirect.headers["Location"]
    assert urlsplit(location).path == "/v1/enterprise-connect/oauth/callback", location
    _set_query(event, urlsplit(location).query)
    cookie = admin.cookies.get("sn_enterprise_connect")
    event["cookies"] = [f"sn_enterprise_connect={cookie}"] if cookie else []
    scene.note("u_admin allowed Enterprise Connect on Cronofy's page; query <- Cronofy's redirect "
               "(code and signed state), cookies <- the browser's sn_enterprise_connect")
    return event


# ---- running ---------------------------------------------------------------------------------------------


@dataclass
class Invocation:
    result: Any
    prepared: list[str]
    queued: dict[str, int]  # messages the invocation left on each queue


def queue_depths(stack: Any) -> dict[str, int]:
    import boto3

    sqs = boto3.client("sqs", region_name=os.environ["AWS_REGION"])
    depths = {}
    for queue_id, url in stack.queue_urls.items():
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
        depths[queue_id] = int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    return depths


def prepare_and_invoke(stack: Any, function: str, name: str, event: dict[str, Any]) -> Invocation:
    """Seed, prepare for the event named `name`, invoke, let what it started finish."""
    from localdev.enterprise_flow import wait_for_callbacks
    from localdev.local import seed

    seed(stack)
    scene = Scene(stack)
    prepare = PREPARE.get(name)
    if prepare is not None:
        event = prepare(scene, json.loads(json.dumps(event)))
    before = queue_depths(stack)
    result = stack.invoke(function, event)
    after = queue_depths(stack)
    queued = {q: after[q] - before[q] for q in after if after[q] > before[q]}
    # What the invocation started (a backfill, Cronofy's callbacks, queued jobs) finishes before the
    # stack stops, so nothing runs against a stopped mock.
    wait_for_callbacks(stack, 60)
    scene.drain()
    return Invocation(result, scene.notes, queued)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make invoke", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("function", help="logical id (CalendarApiFunction) or short name (calendar-api)")
    parser.add_argument("event", type=Path, help="an event file, e.g. events/webhook-change.json")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if not args.event.is_file():
        raise SystemExit(f"make invoke: no event file {args.event} (the samples: {ROOT / 'events'})")
    try:
        event = json.loads(args.event.read_text())
    except ValueError as error:
        raise SystemExit(f"make invoke: {args.event} is not JSON: {error}") from None

    # The functions' log lines go to stderr (Powertools binds its stream at import): stdout carries
    # the answer alone, for `| jq`.
    answer_to = sys.stdout
    sys.stdout = sys.stderr
    try:
        from localdev import template
        from localdev.stack import DevStack

        function = function_id(args.function, template.functions(template.load()))
        name = args.event.stem
        with DevStack(run_state_machines=name not in STEPS_BY_HAND) as stack:
            invocation = prepare_and_invoke(stack, function, name, event)
    finally:
        sys.stdout = answer_to
    for line in invocation.prepared:
        print(f"prepared: {line}", file=sys.stderr)
    print(f"invoked: {function} with {args.event}", file=sys.stderr)
    for queue_id, count in invocation.queued.items():
        print(f"queued: {count} message(s) on {queue_id}", file=sys.stderr)
    print(json.dumps(invocation.result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
