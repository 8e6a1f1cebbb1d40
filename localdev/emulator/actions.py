"""What the calendar's owner (and the operator seeding the tenant) does outside the application,
written once and reached two ways.

Each action is a function of the state. ``ACTIONS`` lists them with their control route: the Python
facade (``CronofyEmulator.move_event(...)``) and the control API (``POST /_emulator/calendars/{id}/
events/move``) are both built from that table, so an action's parameters, defaults and checks exist
in one place. A control route takes the function's leading arguments from its path and the rest, by
name, from the JSON body; the body may hold exactly the function's other parameters, and must hold
those without a default.
"""

from __future__ import annotations

import inspect
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import oauth
from .errors import EmulatorError
from .model import Event, random_hex
from .state import EmulatorState
from .timefmt import ONE_SECOND, coerce_time_or_date, get_zone, is_time_string, parse_date, parse_time


def update_calendar(
    state: EmulatorState,
    calendar_id: str,
    *,
    readonly: bool | None = None,
    deleted: bool | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    with state.lock:
        cal = state.calendar(calendar_id)
        if readonly is not None:
            cal.readonly = bool(readonly)
        if deleted is not None:
            cal.deleted = bool(deleted)
        if name is not None:
            cal.name = name
        return state.calendar_json(cal)


def _bounds(start: Any, end: Any) -> tuple[str, str, bool]:
    try:
        start_wire = coerce_time_or_date(start)
        end_wire = coerce_time_or_date(end)
    except ValueError as exc:
        raise EmulatorError(str(exc)) from None
    timed = is_time_string(start_wire)
    if timed != is_time_string(end_wire):
        raise EmulatorError("start and end must both be times or both be dates")
    if timed:
        if parse_time(end_wire) <= parse_time(start_wire):
            raise EmulatorError("end must be after start")
    elif parse_date(end_wire) <= parse_date(start_wire):
        raise EmulatorError("end must be after start (dates: end is exclusive)")
    return start_wire, end_wire, not timed


def move_event(
    state: EmulatorState,
    calendar_id: str,
    event_id: str | None = None,
    event_uid: str | None = None,
    *,
    start: Any,
    end: Any,
) -> dict[str, Any]:
    with state.lock:
        state.tick()
        cal = state.calendar(calendar_id)
        event = state.find_event(cal, event_id, event_uid)
        if event.deleted:
            raise EmulatorError("the event is deleted; it cannot be moved", status=409)
        start_wire, end_wire, all_day = _bounds(start, end)
        before = state.now() - ONE_SECOND
        event.start, event.end, event.all_day = start_wire, end_wire, all_day
        if not all_day and event.start_tzid is None:
            event.start_tzid = event.end_tzid = "Etc/UTC"
        event.spans.append((start_wire, end_wire))
        event.updated = event.external_updated = state.now()
        state.emit_change(calendar_id, event, before)
        return event.snapshot()


def drift_event(
    state: EmulatorState,
    calendar_id: str,
    event_id: str,
    *,
    start: Any = None,
    end: Any = None,
    summary: str | None = None,
    vanish: bool = False,
) -> None:
    """Operator tool: change or lose an event *silently* (no `updated` bump, no notification, no
    tombstone), as provider-side drift or a lost notification would leave it."""
    with state.lock:
        state.tick()
        cal = state.calendar(calendar_id)
        event = state.find_event(cal, event_id, None)
        if vanish:
            del cal.events[event.event_uid]
            del cal.managed_index[event_id]
            return
        if start is not None and end is not None:
            event.start, event.end, event.all_day = _bounds(start, end)
        if summary is not None:
            event.summary = summary


def delete_event_as_user(
    state: EmulatorState, calendar_id: str, event_id: str | None = None, event_uid: str | None = None
) -> dict[str, Any]:
    with state.lock:
        state.tick()
        cal = state.calendar(calendar_id)
        event = state.find_event(cal, event_id, event_uid)
        if not event.deleted:
            before = state.now() - ONE_SECOND
            event.deleted = True
            event.deleted_by = "user"
            event.status = "cancelled"
            event.updated = event.external_updated = state.now()
            state.emit_change(calendar_id, event, before)
        return event.snapshot()


def add_external_event(
    state: EmulatorState,
    calendar_id: str,
    summary: str,
    start: Any,
    end: Any,
    transparency: str = "opaque",
    status: str = "confirmed",
    *,
    description: str = "",
    location: str | None = None,
    tzid: str = "Etc/UTC",
    recurring: bool = False,
    event_private: bool = False,
) -> str:
    if transparency not in ("opaque", "transparent"):
        raise EmulatorError("transparency must be opaque or transparent")
    if status not in ("confirmed", "tentative"):
        raise EmulatorError("status must be confirmed or tentative")
    if not isinstance(summary, str) or not summary:
        raise EmulatorError("summary is required")
    with state.lock:
        state.tick()
        cal = state.calendar(calendar_id)
        profile = state.profiles[cal.profile_id]
        start_wire, end_wire, all_day = _bounds(start, end)
        now = state.now()
        uid = state.new_event_uid()
        event = Event(
            calendar_id=calendar_id,
            event_uid=uid,
            event_id=None,
            summary=summary,
            start=start_wire,
            end=end_wire,
            all_day=all_day,
            start_tzid=None if all_day else tzid,
            end_tzid=None if all_day else tzid,
            created=now,
            updated=now,
            description=description,
            location={"description": location} if location else None,
            transparency=transparency,
            status=status,
            organizer={"email": profile.email, "display_name": profile.name},
            recurring=recurring,
            series_identifier=random_hex(10) if recurring else None,
            event_private=event_private,
            spans=[(start_wire, end_wire)],
            external_updated=now,
        )
        cal.events[uid] = event
        state.emit_change(calendar_id, event, now - ONE_SECOND)
        return uid


def set_zoneinfo(state: EmulatorState, profile_id: str, zoneinfo: str) -> dict[str, Any]:
    """The account's owner changes their time zone (Cronofy sends no notification for it)."""
    get_zone(zoneinfo)  # an IANA name, as Cronofy's userinfo gives
    with state.lock:
        state.profile(profile_id).zoneinfo = zoneinfo
        return {"profile_id": profile_id, "zoneinfo": zoneinfo}


def disconnect_profile(state: EmulatorState, profile_id: str) -> dict[str, Any]:
    with state.lock:
        profile = state.profile(profile_id)
        if profile.connected:
            profile.connected = False
            query = urllib.parse.urlencode({"email": profile.email})
            profile.relink_url = f"{state.base_url}/relink/{profile.provider_name}?{query}"
            sub = state.account_by_profile.get(profile_id)
            account = state.accounts.get(sub) if sub else None
            if account and not account.revoked and account.profile_attached:
                for chan in state.channels_of(account.sub):
                    if chan.open:
                        state.emit(chan, {"type": "profile_disconnected"})
        return state.profile_json(profile)


def reconnect_profile(state: EmulatorState, profile_id: str) -> dict[str, Any]:
    with state.lock:
        profile = state.profile(profile_id)
        profile.connected = True
        profile.relink_url = None
        return state.profile_json(profile)


def revoke_account(state: EmulatorState, sub: str) -> dict[str, Any]:
    with state.lock:
        if sub not in state.accounts:
            raise EmulatorError(f"unknown account {sub}", status=404)
        state.revoke_grants(sub)
        return state.account_state(sub)


def close_channel(state: EmulatorState, channel_id: str) -> dict[str, Any]:
    with state.lock:
        chan = state.channels.get(channel_id)
        if chan is None:
            raise EmulatorError(f"unknown channel {channel_id}", status=404)
        chan.open = False
        return {**chan.body(), "sub": chan.sub, "open": chan.open}


_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Action:
    """One action and how the control API reaches it (``path`` None: from Python only)."""

    run: Callable[..., Any]  # run(state, *path arguments, **body fields)
    path: str | None = None  # POST /_emulator{path}; its {placeholders} are run's leading arguments
    status: int = 200
    answer_key: str | None = None  # the route answers {answer_key: result} rather than the result

    @property
    def name(self) -> str:
        return self.run.__name__

    def body_fields(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(the fields a control request may send, those it must send)."""
        in_path = set(_PLACEHOLDER.findall(self.path or ""))
        params = [p for p in list(inspect.signature(self.run).parameters.values())[1:] if p.name not in in_path]
        accepted = tuple(p.name for p in params)
        required = tuple(p.name for p in params if p.default is inspect.Parameter.empty)
        return accepted, required


ACTIONS: tuple[Action, ...] = (
    # seeding
    Action(EmulatorState.add_calendar_account, "/accounts", status=201),
    Action(update_calendar, "/calendars/{calendar_id}/update"),
    Action(oauth.issue_code, "/authorize", answer_key="code"),
    # the calendar owner (each sends a ``change`` notification)
    Action(move_event, "/calendars/{calendar_id}/events/move"),
    Action(delete_event_as_user, "/calendars/{calendar_id}/events/delete"),
    Action(add_external_event, "/calendars/{calendar_id}/external-events", status=201, answer_key="event_uid"),
    Action(set_zoneinfo),
    Action(disconnect_profile, "/profiles/{profile_id}/disconnect"),
    Action(reconnect_profile, "/profiles/{profile_id}/reconnect"),
    # the provider and the operator
    Action(revoke_account, "/accounts/{sub}/revoke"),
    Action(close_channel, "/channels/{channel_id}/close"),
    Action(drift_event),
)
