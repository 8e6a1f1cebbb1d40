"""Captured logs of a whole lifecycle, at DEBUG, contain no token, code or secret."""

from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from calsync import wiring
from localdev import browser
from localdev import stack as local


def test_lifecycle_logs_hold_no_secret(stack, jane, teammate, capfd, service_logs):
    secrets_seen = {local.CLIENT_SECRET, local.SIGNING_KEY}
    s = jane["session"]
    secrets_seen.add(s.headers["Authorization"].removeprefix("Bearer "))
    url = browser.start_connect(s, stack.base_url, "google")
    secrets_seen.add(s.cookies.get("sn_calendar_oauth"))
    callback = browser.consent(s, url, jane["work"]["profile_id"], follow=False).headers["Location"]
    secrets_seen.add(parse_qs(urlsplit(callback).query)["code"][0])
    s.get(callback)
    service = wiring.connection_service()
    tokens = service.vault.open("u_jane", service.store.get_tokens("u_jane"))
    secrets_seen |= {tokens.access_token, tokens.refresh_token}
    # a refresh (new tokens), a failing request, a disconnect and a deactivation
    stack.emulator.advance_clock(7200)
    calendar = jane["work"]["calendars"][1]["calendar_id"]
    assert s.put(stack.url("/v1/calendar/connection"), json={"calendar_id": calendar}).status_code == 200
    fresh = service.vault.open("u_jane", service.store.get_tokens("u_jane"))
    secrets_seen |= {fresh.access_token, fresh.refresh_token}
    s.get(stack.url("/v1/calendar/oauth/callback?code=zzz&state=bad"))
    s.delete(stack.url("/v1/calendar/connection"))
    browser.connect(teammate["session"], stack.base_url, "microsoft", teammate["account"]["profile_id"])
    stack.send("UserEventsQueue", {"type": "user.deactivated", "message_id": "m", "occurred_at":
                                   datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "org_id": "org_sunbright",
                                   "user_id": "u_miguel"})
    stack.drain()
    out = capfd.readouterr()
    captured = service_logs.getvalue() + out.out + out.err
    assert "calendar connected" in captured  # the logs were really captured
    leaked = [secret for secret in secrets_seen if secret and secret in captured]
    assert leaked == []
