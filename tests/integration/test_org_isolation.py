"""Issue 10, finding 5: one org's milestone messages never reach another org's calendars, and a
connection is only reached with a session of its own org."""

from calsync import wiring
from calsync.milestones import event_id_for
from tests.helpers import in_days, managed_events, milestone, push


def test_a_message_from_another_org_reusing_a_milestone_id_is_refused(stack, jane_cal):
    start = in_days(4)
    assert push(stack, milestone("ms_shared_id", 3, ["u_jane"], start)) == set()
    # Another org's system sends a milestone with the same id and a higher version
    foreign = milestone("ms_shared_id", 9, ["u_jane"], in_days(9), org_id="org_other", name="Hijacked")
    assert len(push(stack, foreign)) == 1  # refused: it fails (and ends in the DLQ)
    # Jane's event and the mirror are untouched
    event = managed_events(stack, jane_cal)[event_id_for("ms_shared_id")]
    assert event["summary"] == "Site Survey - Ana Ruiz"
    assert event["start"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    mirror, _, _ = wiring.store().milestone_partition("ms_shared_id")
    assert (mirror["org_id"], int(mirror["version"])) == ("org_sunbright", 3)
    # An older version from the other org is refused as well, not taken for a stale repeat
    assert len(push(stack, milestone("ms_shared_id", 1, ["u_jane"], org_id="org_other"))) == 1


def test_a_milestone_never_reaches_an_assignee_of_another_org(stack, jane_cal):
    # org_other assigns its milestone to a user id that is Jane's (connected in org_sunbright)
    assert push(stack, milestone("ms_other_org", 1, ["u_jane"], in_days(6), org_id="org_other")) == set()
    assert event_id_for("ms_other_org") not in managed_events(stack, jane_cal)
    assert wiring.store().get_ref("ms_other_org", "u_jane") is None


def test_a_session_of_another_org_cannot_reach_the_connection(stack, jane_cal):
    intruder = stack.browser("u_jane", "org_other")  # the same user id, another org
    for method, path in (("GET", "/v1/calendar/connection"), ("GET", "/v1/calendar/calendars"),
                         ("DELETE", "/v1/calendar/connection")):
        resp = intruder.request(method, stack.url(path))
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["error"]["code"] == "forbidden"
    resp = intruder.put(stack.url("/v1/calendar/connection"), json={"calendar_id": jane_cal})
    assert resp.status_code == 403
    resp = intruder.post(stack.url("/v1/calendar/connect"), json={"provider": "google"})
    assert resp.status_code == 403
    stack.drain()
    assert wiring.store().get_connection("u_jane").state.value == "connected"
