"""``/_emulator/...`` routes: thin JSON wrappers over ``CronofyEmulator``'s Python methods."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import ApiError, EmulatorError
from .server import Request, Response, Router, json_response

if TYPE_CHECKING:
    from .emulator import CronofyEmulator


def _body(request: Request) -> dict[str, Any]:
    try:
        data = request.json()
    except ApiError as exc:
        raise EmulatorError("the control API takes a JSON object body", status=400) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise EmulatorError("the control API takes a JSON object body", status=400)
    return data


def _flag(request: Request, name: str) -> bool:
    return (request.param(name) or "false").lower() in ("1", "true", "yes")


def _pick(data: dict[str, Any], *names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    missing = [n for n in required if n not in data]
    if missing:
        raise EmulatorError(f"missing field(s): {', '.join(missing)}", status=400)
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise EmulatorError(f"unknown field(s): {', '.join(unknown)}", status=400)
    return {n: data[n] for n in names if n in data}


def build_control_router(emu: CronofyEmulator) -> Router:
    router = Router()
    ok = json_response

    def add(method: str, path: str):
        def register(fn):
            router.add(method, "/_emulator" + path, fn)
            return fn

        return register

    @add("GET", "/state")
    def state(request: Request) -> Response:
        return ok(200, emu.state_summary())

    @add("POST", "/reset")
    def reset(request: Request) -> Response:
        emu.reset()
        return ok(200, {"reset": True})

    @add("GET", "/stats")
    def stats(request: Request) -> Response:
        return ok(200, emu.stats)

    # -- seeding -------------------------------------------------------------------------------
    @add("GET", "/accounts")
    def list_accounts(request: Request) -> Response:
        return ok(200, {"profiles": emu.profiles()})

    @add("POST", "/accounts")
    def add_account(request: Request) -> Response:
        args = _pick(
            _body(request),
            "provider",
            "email",
            "calendars",
            "name",
            "zoneinfo",
            required=("provider", "email"),
        )
        return ok(201, emu.add_calendar_account(**args))

    @add("GET", "/accounts/{sub}")
    def account_state(request: Request, sub: str) -> Response:
        return ok(200, emu.account_state(sub))

    @add("POST", "/accounts/{sub}/revoke")
    def revoke_account(request: Request, sub: str) -> Response:
        return ok(200, emu.revoke_account(sub))

    @add("POST", "/calendars/{calendar_id}/update")
    def update_calendar(request: Request, calendar_id: str) -> Response:
        args = _pick(_body(request), "readonly", "deleted", "name")
        return ok(200, emu.update_calendar(calendar_id, **args))

    @add("POST", "/authorize")
    def authorize(request: Request) -> Response:
        args = _pick(
            _body(request), "profile_id", "redirect_uri", "scope", required=("profile_id", "redirect_uri")
        )
        return ok(200, {"code": emu.issue_code(**args)})

    # -- the calendar owner's actions ----------------------------------------------------------
    @add("GET", "/calendars/{calendar_id}/events")
    def list_events(request: Request, calendar_id: str) -> Response:
        return ok(200, {"events": emu.events(calendar_id, include_deleted=_flag(request, "include_deleted"))})

    @add("POST", "/calendars/{calendar_id}/events/move")
    def move(request: Request, calendar_id: str) -> Response:
        args = _pick(_body(request), "event_id", "event_uid", "start", "end", required=("start", "end"))
        return ok(200, emu.move_event(calendar_id, **args))

    @add("POST", "/calendars/{calendar_id}/events/delete")
    def delete(request: Request, calendar_id: str) -> Response:
        args = _pick(_body(request), "event_id", "event_uid")
        return ok(200, emu.delete_event_as_user(calendar_id, **args))

    @add("POST", "/calendars/{calendar_id}/external-events")
    def external(request: Request, calendar_id: str) -> Response:
        args = _pick(
            _body(request),
            "summary",
            "start",
            "end",
            "transparency",
            "status",
            "description",
            "location",
            "tzid",
            "recurring",
            "event_private",
            required=("summary", "start", "end"),
        )
        return ok(201, {"event_uid": emu.add_external_event(calendar_id, **args)})

    @add("POST", "/profiles/{profile_id}/disconnect")
    def disconnect(request: Request, profile_id: str) -> Response:
        return ok(200, emu.disconnect_profile(profile_id))

    @add("POST", "/profiles/{profile_id}/reconnect")
    def reconnect(request: Request, profile_id: str) -> Response:
        return ok(200, emu.reconnect_profile(profile_id))

    @add("GET", "/channels")
    def channels(request: Request) -> Response:
        return ok(200, {"channels": emu.channels(request.param("sub"))})

    @add("POST", "/channels/{channel_id}/close")
    def close_channel(request: Request, channel_id: str) -> Response:
        return ok(200, emu.close_channel(channel_id))

    # -- operator: clock, faults, limits, logs -------------------------------------------------
    @add("GET", "/clock")
    def clock(request: Request) -> Response:
        return ok(200, {"now": emu.now_iso()})

    @add("POST", "/clock/advance")
    def advance(request: Request) -> Response:
        args = _pick(_body(request), "seconds", required=("seconds",))
        emu.advance_clock(float(args["seconds"]))
        return ok(200, {"now": emu.now_iso()})

    @add("GET", "/realism")
    def realism(request: Request) -> Response:
        return ok(200, emu.realism.as_dict())

    @add("POST", "/realism")
    def configure(request: Request) -> Response:
        return ok(200, emu.configure(**_body(request)))

    @add("POST", "/settle")
    def settle(request: Request) -> Response:
        args = _pick(_body(request), "timeout")
        return ok(200, {"settled": emu.settle(timeout=float(args.get("timeout", 10)))})

    @add("POST", "/rotation")
    def begin_rotation(request: Request) -> Response:
        args = _pick(_body(request), "new_secret", required=("new_secret",))
        return ok(200, {"active_secrets": len(emu.begin_secret_rotation(args["new_secret"]))})

    @add("POST", "/rotation/complete")
    def complete_rotation(request: Request) -> Response:
        return ok(200, {"active_secrets": len(emu.complete_secret_rotation())})

    @add("GET", "/faults")
    def faults(request: Request) -> Response:
        return ok(200, {"faults": emu.faults.list()})

    @add("POST", "/faults")
    def add_fault(request: Request) -> Response:
        args = _pick(
            _body(request), "path_prefix", "method", "status", "retry_after", "count", "latency_ms", "mode"
        )
        return ok(201, emu.add_fault(**args))

    @add("DELETE", "/faults")
    def clear_faults(request: Request) -> Response:
        emu.clear_faults()
        return ok(200, {"faults": []})

    @add("POST", "/rate-limit")
    def rate_limit(request: Request) -> Response:
        args = _pick(_body(request), "per_second", "per_minute")
        if not args:
            emu.set_rate_limit(None)
        elif len(args) != 2:
            raise EmulatorError("give both per_second and per_minute, or neither to disable", status=400)
        else:
            emu.set_rate_limit((args["per_second"], args["per_minute"]))
        return ok(200, emu.stats)

    @add("GET", "/requests")
    def requests_log(request: Request) -> Response:
        method = request.param("method")
        prefix = request.param("path_prefix")
        entries = [
            e
            for e in emu.request_log
            if (method is None or e["method"] == method.upper())
            and (prefix is None or e["path"].startswith(prefix))
        ]
        return ok(200, {"count": len(entries), "requests": entries})

    @add("DELETE", "/requests")
    def clear_requests(request: Request) -> Response:
        emu.clear_request_log()
        return ok(200, {"count": 0, "requests": []})

    @add("GET", "/notifications")
    def notifications(request: Request) -> Response:
        return ok(200, {"notifications": emu.notifications})

    @add("DELETE", "/notifications")
    def clear_notifications(request: Request) -> Response:
        emu.clear_notifications()
        return ok(200, {"notifications": []})

    @add("POST", "/notifications/wait")
    def wait_notifications(request: Request) -> Response:
        args = _pick(_body(request), "timeout")
        drained = emu.wait_for_notifications(timeout=float(args.get("timeout", 5)))
        return ok(200, {"drained": drained, "notifications": emu.notifications})

    return router
