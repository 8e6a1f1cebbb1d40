"""``/_emulator/...`` routes: JSON over the emulator's Python methods.

The calendar owner's actions and the seeding calls come from ``actions.ACTIONS`` (one route per
action, its body fields read from the action's signature); the operator's instruments (clock,
realism, faults, rate limit, logs, notifications) are listed below as (method, path, handler).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .actions import ACTIONS, Action
from .core import Emulator
from .errors import ApiError, EmulatorError
from .web import Request, Response, Router, json_response

PREFIX = "/_emulator"


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


def _action_route(emu: Emulator, action: Action) -> Callable[..., Response]:
    accepted, required = action.body_fields()

    def route(request: Request, **path_args: str) -> Response:
        # An action without body fields ignores the body (as its route always has).
        fields = _pick(_body(request), *accepted, required=required) if accepted else {}
        result = action.run(emu.state, *path_args.values(), **fields)
        return json_response(action.status, {action.answer_key: result} if action.answer_key else result)

    return route


# -- the operator's instruments: each handler(emu, request) -> (status, JSON body) ---------------------

Result = tuple[int, Any]


def _state(emu: Emulator, request: Request) -> Result:
    return 200, emu.state_summary()


def _reset(emu: Emulator, request: Request) -> Result:
    emu.reset()
    return 200, {"reset": True}


def _stats(emu: Emulator, request: Request) -> Result:
    return 200, emu.stats


def _profiles(emu: Emulator, request: Request) -> Result:
    return 200, {"profiles": emu.profiles()}


def _account(emu: Emulator, request: Request, sub: str) -> Result:
    return 200, emu.account_state(sub)


def _events(emu: Emulator, request: Request, calendar_id: str) -> Result:
    return 200, {"events": emu.events(calendar_id, include_deleted=_flag(request, "include_deleted"))}


def _channels(emu: Emulator, request: Request) -> Result:
    return 200, {"channels": emu.channels(request.param("sub"))}


def _clock(emu: Emulator, request: Request) -> Result:
    return 200, {"now": emu.now_iso()}


def _advance(emu: Emulator, request: Request) -> Result:
    args = _pick(_body(request), "seconds", required=("seconds",))
    emu.advance_clock(float(args["seconds"]))
    return 200, {"now": emu.now_iso()}


def _realism(emu: Emulator, request: Request) -> Result:
    return 200, emu.realism.as_dict()


def _configure(emu: Emulator, request: Request) -> Result:
    return 200, emu.configure(**_body(request))


def _settle(emu: Emulator, request: Request) -> Result:
    args = _pick(_body(request), "timeout")
    return 200, {"settled": emu.settle(timeout=float(args.get("timeout", 10)))}


def _begin_rotation(emu: Emulator, request: Request) -> Result:
    args = _pick(_body(request), "new_secret", required=("new_secret",))
    return 200, {"active_secrets": len(emu.begin_secret_rotation(args["new_secret"]))}


def _complete_rotation(emu: Emulator, request: Request) -> Result:
    return 200, {"active_secrets": len(emu.complete_secret_rotation())}


def _faults(emu: Emulator, request: Request) -> Result:
    return 200, {"faults": emu.faults.list()}


def _add_fault(emu: Emulator, request: Request) -> Result:
    args = _pick(_body(request), "path_prefix", "method", "status", "retry_after", "count", "latency_ms", "mode")
    return 201, emu.add_fault(**args)


def _clear_faults(emu: Emulator, request: Request) -> Result:
    emu.clear_faults()
    return 200, {"faults": []}


def _rate_limit(emu: Emulator, request: Request) -> Result:
    args = _pick(_body(request), "per_second", "per_minute")
    if not args:
        emu.set_rate_limit(None)
    elif len(args) != 2:
        raise EmulatorError("give both per_second and per_minute, or neither to disable", status=400)
    else:
        emu.set_rate_limit((args["per_second"], args["per_minute"]))
    return 200, emu.stats


def _requests(emu: Emulator, request: Request) -> Result:
    method = request.param("method")
    prefix = request.param("path_prefix")
    entries = [
        e
        for e in emu.request_log
        if (method is None or e["method"] == method.upper()) and (prefix is None or e["path"].startswith(prefix))
    ]
    return 200, {"count": len(entries), "requests": entries}


def _clear_requests(emu: Emulator, request: Request) -> Result:
    emu.clear_request_log()
    return 200, {"count": 0, "requests": []}


def _notifications(emu: Emulator, request: Request) -> Result:
    return 200, {"notifications": emu.notifications}


def _clear_notifications(emu: Emulator, request: Request) -> Result:
    emu.clear_notifications()
    return 200, {"notifications": []}


def _wait_notifications(emu: Emulator, request: Request) -> Result:
    args = _pick(_body(request), "timeout")
    drained = emu.wait_for_notifications(timeout=float(args.get("timeout", 5)))
    return 200, {"drained": drained, "notifications": emu.notifications}


INSTRUMENTS: tuple[tuple[str, str, Callable[..., Result]], ...] = (
    ("GET", "/state", _state),
    ("POST", "/reset", _reset),
    ("GET", "/stats", _stats),
    ("GET", "/accounts", _profiles),
    ("GET", "/accounts/{sub}", _account),
    ("GET", "/calendars/{calendar_id}/events", _events),
    ("GET", "/channels", _channels),
    ("GET", "/clock", _clock),
    ("POST", "/clock/advance", _advance),
    ("GET", "/realism", _realism),
    ("POST", "/realism", _configure),
    ("POST", "/settle", _settle),
    ("POST", "/rotation", _begin_rotation),
    ("POST", "/rotation/complete", _complete_rotation),
    ("GET", "/faults", _faults),
    ("POST", "/faults", _add_fault),
    ("DELETE", "/faults", _clear_faults),
    ("POST", "/rate-limit", _rate_limit),
    ("GET", "/requests", _requests),
    ("DELETE", "/requests", _clear_requests),
    ("GET", "/notifications", _notifications),
    ("DELETE", "/notifications", _clear_notifications),
    ("POST", "/notifications/wait", _wait_notifications),
)


def _instrument_route(emu: Emulator, handler: Callable[..., Result]) -> Callable[..., Response]:
    def route(request: Request, **path_args: str) -> Response:
        status, body = handler(emu, request, **path_args)
        return json_response(status, body)

    return route


def build_control_router(emu: Emulator) -> Router:
    router = Router()
    for method, path, handler in INSTRUMENTS:
        router.add(method, PREFIX + path, _instrument_route(emu, handler))
    for action in ACTIONS:
        if action.path is not None:
            router.add("POST", PREFIX + action.path, _action_route(emu, action))
    return router
