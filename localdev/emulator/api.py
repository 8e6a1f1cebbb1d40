"""The ``/v1`` endpoints of the emulated Cronofy API.

Each function takes the state, the authenticated account and token and the decoded request
parts, and either returns ``(status, body)`` or raises ``ApiError``. None of them sends push
notifications for the application's own writes (only ``verification`` on channel creation).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from .errors import ApiError, FieldErrors, single_error
from .model import (
    MAX_CHANNELS_PER_ACCOUNT,
    AccessToken,
    Account,
    Calendar,
    Channel,
    Event,
    random_hex,
    scope_allows,
)
from .state import EmulatorState
from .timefmt import day_start, fmt_time, get_zone, localized, parse_date, parse_time
from .validation import EVENT_ID_RE, validate_upsert

Result = tuple[int, Any]
Query = dict[str, list[str]]

DEFAULT_PAST = timedelta(days=42)
DEFAULT_FUTURE = timedelta(days=201)
MAX_BATCH = 50
MAX_CALLBACK_URL = 128
MAX_PAGE_CURSORS = 5000
EVENTS_PATH_RE = re.compile(r"^/v1/calendars/([^/]+)/events$")


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------


def _require_scope(token: AccessToken, needed: str, alternative: str | None = None) -> None:
    if scope_allows(token.scope, needed) or (alternative and scope_allows(token.scope, alternative)):
        return
    raise ApiError(
        403,
        {"error": "insufficient_scope", "error_description": f"this request needs the {needed} scope"},
    )


def _one(query: Query, name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    return values[-1]


def _bool_param(query: Query, name: str, errs: FieldErrors, default: bool = False) -> bool:
    raw = _one(query, name)
    if raw is None:
        return default
    # "True"/"False" as pycronofy (Cronofy's own SDK) sends them on every Read Events and
    # free/busy call are accepted; anything else ("1", "yes", "") is refused (README, issue 12).
    if raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    errs.invalid(name, f"{name} must be true or false")
    return default


def _calendar_ids_param(
    state: EmulatorState, account: Account, query: Query, errs: FieldErrors
) -> set[str] | None:
    if "calendar_ids" in query:
        errs.invalid("calendar_ids", "pass calendar ids as repeated calendar_ids[] parameters")
        return None
    values = query.get("calendar_ids[]")
    if values is None:
        return None
    own = {c.calendar_id for c in state.account_calendars(account)}
    unknown = [v for v in values if v not in own]
    if not values or any(not v for v in values):
        errs.invalid("calendar_ids", "calendar_ids[] must not be empty")
    elif unknown:
        errs.invalid("calendar_ids", f"unknown calendar_ids: {', '.join(unknown)}")
    return set(values)


def _parsed_param[T](query: Query, name: str, errs: FieldErrors, parse: Callable[[str], T],
                  required: bool = False) -> T | None:
    """A query parameter through `parse`; absent is None (or `errors.required`), unparseable is
    `errors.invalid` with the parser's reason."""
    raw = _one(query, name)
    if raw is None or (required and raw == ""):
        if required:
            errs.required(name)
        return None
    try:
        return parse(raw)
    except ValueError as exc:
        errs.invalid(name, f"{name} {exc}")
        return None


def _tzid_param(query: Query, errs: FieldErrors) -> ZoneInfo | None:
    return _parsed_param(query, "tzid", errs, get_zone, required=True)


def _date_param(query: Query, name: str, errs: FieldErrors) -> Any:
    return _parsed_param(query, name, errs, parse_date)


def _event_span(event: Event, start: str, end: str, zone: ZoneInfo) -> tuple[datetime, datetime]:
    if "T" in start:
        return parse_time(start), parse_time(end)
    return day_start(parse_date(start), zone), day_start(parse_date(end), zone)


def _overlaps(event: Event, zone: ZoneInfo, lo: datetime, hi: datetime, include_moved: bool) -> bool:
    spans = event.spans if include_moved and event.spans else [(event.start, event.end)]
    for start, end in spans:
        s, e = _event_span(event, start, end, zone)
        if s < hi and e > lo:
            return True
    return False


def _window(query_from: Any, query_to: Any, zone: ZoneInfo, now: datetime) -> tuple[datetime, datetime]:
    lo = day_start(query_from, zone) if query_from else now - DEFAULT_PAST
    hi = day_start(query_to, zone) if query_to else now + DEFAULT_FUTURE
    return lo, hi


def _in_sync_window(state: EmulatorState, event: Event, zone: ZoneInfo, include_moved: bool) -> bool:
    """Cronofy syncs a calendar's events from 42 days back to 201 days ahead; an external event
    outside that window is not known to Cronofy (docs: recommended sync FAQ, free-busy defaults)."""
    if not state.realism.enforce_windows:
        return True
    now = state.now()
    return _overlaps(event, zone, now - DEFAULT_PAST, now + DEFAULT_FUTURE, include_moved)


def _check_free_busy_bounds(state: EmulatorState, q_from: Any, q_to: Any, zone: ZoneInfo, errs: FieldErrors) -> None:
    """free/busy: `from` is at the earliest 42 days back, `to` at the latest 201 days ahead
    (docs.cronofy.com/developers/api/events/free-busy/: "minimum value of 42 days in the past",
    "maximum value of 201 days in the future"). Beyond: 422 in Cronofy's field-error shape."""
    if not state.realism.enforce_windows:
        return
    today = state.now().astimezone(zone).date()
    if q_from is not None and q_from < today - DEFAULT_PAST:
        errs.invalid("from", f"from must not be more than {DEFAULT_PAST.days} days in the past")
    if q_to is not None and q_to > today + DEFAULT_FUTURE + timedelta(days=1):
        errs.invalid("to", f"to must not be more than {DEFAULT_FUTURE.days} days in the future")


def _bound_json(event: Event, value: str, tzid: str | None, localize: bool) -> Any:
    if not localize or "T" not in value:
        return value
    zone_name = tzid or "Etc/UTC"
    return {"time": localized(parse_time(value), get_zone(zone_name)), "tzid": zone_name}


def _read_target(state: EmulatorState, account: Account, calendar_id: str) -> Calendar:
    for cal in state.account_calendars(account):
        if cal.calendar_id == calendar_id:
            return cal
    raise single_error(404, "calendar_id", "errors.not_found", f"calendar {calendar_id} was not found")


def _write_target(state: EmulatorState, account: Account, calendar_id: str) -> Calendar:
    cal = _read_target(state, account, calendar_id)
    profile = state.profiles[cal.profile_id]
    if not profile.connected:
        raise single_error(
            423,
            "profile_id",
            "errors.profile_disconnected",
            f"profile {profile.profile_id} is disconnected and must be relinked",
        )
    if cal.deleted:
        raise single_error(403, "calendar_id", "errors.forbidden", f"calendar {calendar_id} has been deleted")
    if cal.readonly:
        raise single_error(403, "calendar_id", "errors.forbidden", f"calendar {calendar_id} is read-only")
    return cal


def _paginate(
    state: EmulatorState, account: Account, kind: str, items: list[dict[str, Any]]
) -> dict[str, Any]:
    """Snapshot the result, return page 1 and keep pages 2..n behind opaque next_page tokens."""
    size = state.page_size
    chunks = [items[i : i + size] for i in range(0, len(items), size)] or [[]]
    total = len(chunks)
    tokens: list[str | None] = [None] + [random_hex(24) for _ in range(1, total)] + [None]
    for i in range(1, total):
        state.page_cursors[tokens[i]] = {  # type: ignore[index]
            "sub": account.sub,
            "kind": kind,
            "items": chunks[i],
            "current": i + 1,
            "total": total,
            "next": tokens[i + 1],
        }
    while len(state.page_cursors) > MAX_PAGE_CURSORS:
        state.page_cursors.pop(next(iter(state.page_cursors)))
    return _page_body(state, kind, chunks[0], 1, total, tokens[1])


def _page_body(
    state: EmulatorState,
    kind: str,
    items: list[dict[str, Any]],
    current: int,
    total: int,
    next_token: str | None,
) -> dict[str, Any]:
    pages: dict[str, Any] = {"current": current, "total": total}
    if next_token:
        path = "events" if kind == "events" else "free_busy"
        pages["next_page"] = f"{state.base_url}/v1/{path}/pages/{next_token}"
    return {"pages": pages, kind: items}


def read_page(state: EmulatorState, account: Account, kind: str, token: str) -> Result:
    with state.lock:
        cursor = state.page_cursors.get(token)
        if cursor is None or cursor["sub"] != account.sub or cursor["kind"] != kind:
            raise ApiError(404, {"error": "not_found", "error_description": "unknown or expired page"})
        return 200, _page_body(
            state, kind, cursor["items"], cursor["current"], cursor["total"], cursor.get("next")
        )


def _json_object(data: Any, field: str = "body") -> dict[str, Any]:
    if not isinstance(data, dict):
        raise single_error(422, field, "errors.invalid", "the request body must be a JSON object")
    return data


# ------------------------------------------------------------------------------------------------
# identity
# ------------------------------------------------------------------------------------------------


def userinfo(state: EmulatorState, account: Account, token: AccessToken) -> Result:
    with state.lock:
        profile = state.profiles[account.profile_id]
        profiles = []
        for p in state.account_profiles(account):
            item = state.profile_json(p)
            item["profile_calendars"] = [
                state.calendar_json(state.calendars[c], with_profile=False) for c in p.calendar_ids
            ]
            profiles.append(item)
        return 200, {
            "sub": account.sub,
            "email": profile.email,
            "name": profile.name,
            "zoneinfo": profile.zoneinfo,
            "cronofy.type": "account",
            "cronofy.data": {
                "authorization": {"scope": token.scope, "status": "active"},
                "profiles": profiles,
                "conferencing_profiles": [],
            },
        }


def profiles(state: EmulatorState, account: Account, token: AccessToken) -> Result:
    with state.lock:
        return 200, {"profiles": [state.profile_json(p) for p in state.account_profiles(account)]}


def account_info(state: EmulatorState, account: Account, token: AccessToken) -> Result:
    with state.lock:
        profile = state.profiles[account.profile_id]
        return 200, {
            "account": {
                "account_id": account.sub,
                "email": profile.email,
                "name": profile.name,
                "scope": token.scope,
                "default_tzid": profile.zoneinfo,
            }
        }


def calendars(state: EmulatorState, account: Account, token: AccessToken) -> Result:
    _require_scope(token, "list_calendars")
    with state.lock:
        return 200, {
            "sub": account.sub,
            "calendars": [state.calendar_json(c) for c in state.account_calendars(account)],
        }


def revoke_profile(state: EmulatorState, account: Account, token: AccessToken, profile_id: str) -> Result:
    with state.lock:
        if not account.profile_attached or account.profile_id != profile_id:
            raise single_error(404, "profile_id", "errors.not_found", f"profile {profile_id} was not found")
        account.profile_attached = False
        return 202, None


# ------------------------------------------------------------------------------------------------
# events: writes
# ------------------------------------------------------------------------------------------------


def upsert_event(
    state: EmulatorState, account: Account, token: AccessToken, calendar_id: str, data: Any
) -> Result:
    _require_scope(token, "create_event")
    with state.lock:
        cal = _write_target(state, account, calendar_id)
        if isinstance(data, dict) and "event_id" not in data and "event_uid" in data:
            raise single_error(
                403,
                "event_uid",
                "errors.forbidden",
                "editing external events needs unrestricted permission on this calendar",
            )
        write, errs = validate_upsert(data)
        errs.raise_if_any()
        assert write is not None
        profile = state.profiles[cal.profile_id]
        state.defer(lambda now: _apply_upsert(state, cal, profile, write, now))
        return 202, None


def _apply_upsert(state: EmulatorState, cal: Calendar, profile: Any, write: Any, now: datetime) -> None:
    """Land a validated upsert (deferred by ``realism.write_delay``)."""
    uid = cal.managed_index.get(write.event_id)
    event = cal.events.get(uid) if uid else None
    if event is None:
        event = Event(
            calendar_id=cal.calendar_id,
            event_uid=state.new_event_uid(),
            event_id=write.event_id,
            summary=write.summary,
            start=write.start,
            end=write.end,
            all_day=write.all_day,
            start_tzid=write.start_tzid,
            end_tzid=write.end_tzid,
            created=now,
            updated=now,
            organizer={"email": profile.email, "display_name": profile.name},
            spans=[(write.start, write.end)],
        )
        cal.events[event.event_uid] = event
        cal.managed_index[write.event_id] = event.event_uid
    else:
        event.summary = write.summary
        event.start, event.end, event.all_day = write.start, write.end, write.all_day
        event.start_tzid, event.end_tzid = write.start_tzid, write.end_tzid
        if event.spans[-1:] != [(write.start, write.end)]:
            event.spans.append((write.start, write.end))
        if event.deleted:
            event.deleted = False
            event.deleted_by = None
            event.status = "confirmed"
        event.updated = now
    for name, value in write.optional.items():
        if name == "attendees":
            invited = [
                {"email": a["email"], "display_name": a.get("display_name", ""), "status": "needs_action"}
                for a in value.get("invite", [])
            ]
            removed = {a["email"] for a in value.get("remove", []) + value.get("reject", [])}
            keep = [a for a in event.attendees if a["email"] not in removed]
            known = {a["email"] for a in keep}
            event.attendees = keep + [a for a in invited if a["email"] not in known]
        elif name == "transparency":
            event.transparency = value
        else:
            setattr(event, name, value)


def delete_event(
    state: EmulatorState, account: Account, token: AccessToken, calendar_id: str, data: Any
) -> Result:
    _require_scope(token, "delete_event")
    with state.lock:
        cal = _write_target(state, account, calendar_id)
        body = _json_object(data)
        event: Event | None = None
        if "event_id" not in body and "event_uid" in body:
            event = cal.events.get(body["event_uid"]) if isinstance(body["event_uid"], str) else None
            if event is None or not event.managed:
                raise single_error(
                    403,
                    "event_uid",
                    "errors.forbidden",
                    "deleting external events needs unrestricted permission on this calendar",
                )
        else:
            event_id = body.get("event_id")
            if event_id is None or event_id == "":
                raise single_error(422, "event_id", "errors.required", "event_id must be specified")
            if not isinstance(event_id, str) or not EVENT_ID_RE.match(event_id):
                raise single_error(
                    422,
                    "event_id",
                    "errors.invalid",
                    "event_id must be 1-64 characters from A-Z a-z 0-9 _ - . @",
                )
        target = event
        managed_id = None if target is not None else event_id

        def apply(now: datetime) -> None:
            found = target
            if managed_id is not None:
                uid = cal.managed_index.get(managed_id)
                found = cal.events.get(uid) if uid else None
            if found is not None and not found.deleted:
                found.deleted = True
                found.deleted_by = "app"
                found.status = "cancelled"
                found.updated = now

        state.defer(apply)
        return 202, None


def _bulk_targets(own: list[Calendar], body: dict[str, Any], has_all: bool) -> list[Calendar]:
    """The calendars a bulk delete names: all the account's (``delete_all``) or those listed."""
    if has_all:
        if body["delete_all"] is not True:
            raise single_error(422, "delete_all", "errors.invalid", "delete_all must be true")
        return own
    ids = body["calendar_ids"]
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
        raise single_error(
            422,
            "calendar_ids",
            "errors.invalid",
            "calendar_ids must be a non-empty list of calendar ids",
        )
    by_id = {c.calendar_id: c for c in own}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise single_error(422, "calendar_ids", "errors.invalid", f"unknown calendar_ids: {', '.join(unknown)}")
    return [by_id[i] for i in ids]


def bulk_delete(state: EmulatorState, account: Account, token: AccessToken, data: Any) -> Result:
    _require_scope(token, "delete_event")
    if data is None:
        raise single_error(
            422,
            "delete_all",
            "errors.required",
            "send a JSON body with either delete_all: true or calendar_ids: [...]",
        )
    body = _json_object(data)
    has_all = "delete_all" in body
    has_ids = "calendar_ids" in body
    if has_all == has_ids:
        raise single_error(
            422,
            "delete_all",
            "errors.invalid",
            "exactly one of delete_all or calendar_ids must be given",
        )
    with state.lock:
        targets = _bulk_targets(state.account_calendars(account), body, has_all)
        for cal in targets:
            profile = state.profiles[cal.profile_id]
            if not profile.connected:
                raise single_error(
                    423,
                    "profile_id",
                    "errors.profile_disconnected",
                    f"profile {profile.profile_id} is disconnected and must be relinked",
                )

        def apply(now: datetime) -> None:
            for cal in targets:
                for event in cal.events.values():
                    if event.managed and not event.deleted:
                        event.deleted = True
                        event.deleted_by = "app"
                        event.status = "cancelled"
                        event.updated = now

        state.defer(apply)
        return 202, None


def batch(state: EmulatorState, account: Account, token: AccessToken, data: Any) -> Result:
    body = _json_object(data)
    entries = body.get("batch")
    if entries is None:
        raise single_error(422, "batch", "errors.required", "batch must be specified")
    if not isinstance(entries, list):
        raise single_error(422, "batch", "errors.invalid", "batch must be a list")
    if not entries:
        raise single_error(422, "batch", "errors.required", "batch must contain at least one request")
    if len(entries) > MAX_BATCH:
        raise single_error(422, "batch", "errors.invalid", f"batch may contain at most {MAX_BATCH} requests")
    results: list[dict[str, Any]] = []
    for entry in entries:
        try:
            results.append({"status": _batch_entry(state, account, token, entry)})
        except ApiError as exc:
            item: dict[str, Any] = {"status": exc.status}
            if exc.body is not None:
                item["data"] = exc.body
            results.append(item)
    return 207, {"batch": results}


def _batch_entry(state: EmulatorState, account: Account, token: AccessToken, entry: Any) -> int:
    if not isinstance(entry, dict):
        raise single_error(422, "batch", "errors.invalid", "each batch entry must be an object")
    method = entry.get("method")
    relative_url = entry.get("relative_url")
    if method not in ("POST", "DELETE"):
        raise single_error(422, "method", "errors.invalid", "method must be POST or DELETE")
    if not isinstance(relative_url, str):
        raise single_error(422, "relative_url", "errors.required", "relative_url must be specified")
    match = EVENTS_PATH_RE.match(relative_url)
    if not match:
        raise single_error(
            422, "relative_url", "errors.invalid", "relative_url must be /v1/calendars/{calendar_id}/events"
        )
    calendar_id = urllib.parse.unquote(match.group(1))
    data = entry.get("data")
    if data is None:
        raise single_error(422, "data", "errors.required", "data must be specified")
    if method == "POST":
        status, _ = upsert_event(state, account, token, calendar_id, data)
    else:
        status, _ = delete_event(state, account, token, calendar_id, data)
    return status


# ------------------------------------------------------------------------------------------------
# events: reads
# ------------------------------------------------------------------------------------------------


def _event_json(state: EmulatorState, event: Event, localize: bool) -> dict[str, Any]:
    cal = state.calendars[event.calendar_id]
    out: dict[str, Any] = {"calendar_id": event.calendar_id, "event_uid": event.event_uid}
    if event.managed:
        out["event_id"] = event.event_id
    out.update(
        summary=event.summary,
        description=event.description,
        start=_bound_json(event, event.start, event.start_tzid, localize),
        end=_bound_json(event, event.end, event.end_tzid, localize),
        deleted=event.deleted,
        created=fmt_time(event.created),
        updated=fmt_time(event.updated),
    )
    if event.location:
        out["location"] = dict(event.location)
    out["participation_status"] = event.participation_status
    out["attendees"] = [dict(a) for a in event.attendees]
    if event.organizer and not event.deleted:
        out["organizer"] = dict(event.organizer)
    out.update(
        transparency=event.transparency,
        status=event.status,
        categories=list(event.categories),
        recurring=event.recurring,
    )
    if event.series_identifier:
        out["series_identifier"] = event.series_identifier
    out["event_private"] = event.event_private
    editable = event.managed and not event.deleted and not cal.readonly and not cal.deleted
    out["options"] = {
        "delete": editable,
        "update": editable,
        "change_participation_status": not event.managed and not event.deleted,
    }
    return out


@dataclass(frozen=True)
class _ReadFlags:
    """What a read events query asks for, beyond the calendars."""

    include_deleted: bool
    include_managed: bool
    only_managed: bool
    include_moved: bool
    last_modified: datetime | None
    explicit_window: bool
    zone: ZoneInfo
    lo: datetime
    hi: datetime


def _selected(state: EmulatorState, event: Event, f: _ReadFlags) -> bool:
    """Whether a read events query returns ``event``."""
    if event.deleted and not f.include_deleted:
        return False
    if event.managed and not (f.include_managed or f.only_managed):
        return False
    if f.only_managed and not event.managed:
        return False
    if f.last_modified is not None:
        stamp = event.external_updated if state.realism.last_modified_external_only else event.updated
        if stamp is None or stamp < f.last_modified:
            return False
    if (not event.managed or f.explicit_window) and not _overlaps(event, f.zone, f.lo, f.hi, f.include_moved):
        return False
    return event.managed or _in_sync_window(state, event, f.zone, f.include_moved)


def read_events(state: EmulatorState, account: Account, token: AccessToken, query: Query) -> Result:
    errs = FieldErrors()
    only_managed = _bool_param(query, "only_managed", errs)
    _require_scope(token, "read_events", "create_event" if only_managed else None)
    zone = _tzid_param(query, errs)
    q_from = _date_param(query, "from", errs)
    q_to = _date_param(query, "to", errs)
    include_managed = _bool_param(query, "include_managed", errs)
    include_deleted = _bool_param(query, "include_deleted", errs)
    include_moved = _bool_param(query, "include_moved", errs)
    localize = _bool_param(query, "localized_times", errs)
    last_modified = _parsed_param(query, "last_modified", errs, parse_time)
    with state.lock:
        wanted = _calendar_ids_param(state, account, query, errs)
        if q_from and q_to and q_to <= q_from:
            errs.invalid("to", "to must be after from")
        errs.raise_if_any()
        assert zone is not None
        lo, hi = _window(q_from, q_to, zone, state.now())
        flags = _ReadFlags(
            include_deleted, include_managed, only_managed, include_moved, last_modified,
            q_from is not None or q_to is not None, zone, lo, hi,
        )
        selected: list[Event] = []
        for cal in state.account_calendars(account):
            if wanted is not None and cal.calendar_id not in wanted:
                continue
            selected += [e for e in cal.events.values() if _selected(state, e, flags)]
        selected.sort(key=lambda e: (_event_span(e, e.start, e.end, zone)[0], e.event_uid))
        items = [_event_json(state, e, localize) for e in selected]
        return 200, _paginate(state, account, "events", items)


def free_busy(state: EmulatorState, account: Account, token: AccessToken, query: Query) -> Result:
    _require_scope(token, "read_free_busy")
    errs = FieldErrors()
    zone = _tzid_param(query, errs)
    q_from = _date_param(query, "from", errs)
    q_to = _date_param(query, "to", errs)
    include_managed = _bool_param(query, "include_managed", errs)
    localize = _bool_param(query, "localized_times", errs)
    with state.lock:
        wanted = _calendar_ids_param(state, account, query, errs)
        if q_from and q_to and q_to <= q_from:
            errs.invalid("to", "to must be after from")
        errs.raise_if_any()
        assert zone is not None
        _check_free_busy_bounds(state, q_from, q_to, zone, errs)
        errs.raise_if_any()
        lo, hi = _window(q_from, q_to, zone, state.now())
        selected: list[Event] = []
        for cal in state.account_calendars(account):
            if wanted is not None and cal.calendar_id not in wanted:
                continue
            for event in cal.events.values():
                if event.deleted or event.status == "cancelled":
                    continue
                if event.managed and not include_managed:
                    continue
                if not _overlaps(event, zone, lo, hi, False):
                    continue
                if not event.managed and not _in_sync_window(state, event, zone, False):
                    continue
                selected.append(event)
        selected.sort(key=lambda e: (_event_span(e, e.start, e.end, zone)[0], e.event_uid))
        items = []
        for event in selected:
            if event.transparency == "transparent":
                status = "free"
            elif event.status == "tentative":
                status = "tentative"
            else:
                status = "busy"
            items.append(
                {
                    "calendar_id": event.calendar_id,
                    "start": _bound_json(event, event.start, event.start_tzid, localize),
                    "end": _bound_json(event, event.end, event.end_tzid, localize),
                    "free_busy_status": status,
                }
            )
        return 200, _paginate(state, account, "free_busy", items)


# ------------------------------------------------------------------------------------------------
# channels
# ------------------------------------------------------------------------------------------------


def _check_callback_url(url: Any, errs: FieldErrors) -> None:
    if url is None or url == "":
        errs.required("callback_url")
    elif not isinstance(url, str):
        errs.invalid("callback_url", "callback_url must be a string")
    else:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            errs.invalid("callback_url", "callback_url must be an http or https URL")
        elif len(url) > MAX_CALLBACK_URL:
            errs.invalid("callback_url", f"callback_url must be at most {MAX_CALLBACK_URL} characters")


def _channel_filters(state: EmulatorState, account: Account, filters_in: Any, errs: FieldErrors) -> dict[str, Any]:
    """A channel's filters, checked (what is wrong is recorded in ``errs``)."""
    filters: dict[str, Any] = {}
    if filters_in is None:
        return filters
    if not isinstance(filters_in, dict):
        errs.invalid("filters", "filters must be an object")
        return filters
    if "calendar_ids" in filters_in:
        ids = filters_in["calendar_ids"]
        own = {c.calendar_id for c in state.account_calendars(account)}
        if not isinstance(ids, list) or not ids or not all(isinstance(i, str) for i in ids):
            errs.invalid("filters", "filters.calendar_ids must be a non-empty list")
        elif any(i not in own for i in ids):
            errs.invalid("filters", "filters.calendar_ids contains an unknown calendar")
        else:
            filters["calendar_ids"] = list(ids)
    if "only_managed" in filters_in:
        if not isinstance(filters_in["only_managed"], bool):
            errs.invalid("filters", "filters.only_managed must be a boolean")
        else:
            filters["only_managed"] = filters_in["only_managed"]
    return filters


def create_channel(state: EmulatorState, account: Account, token: AccessToken, data: Any) -> Result:
    body = _json_object(data)
    errs = FieldErrors()
    url = body.get("callback_url")
    _check_callback_url(url, errs)
    with state.lock:
        filters = _channel_filters(state, account, body.get("filters"), errs)
        errs.raise_if_any()
        _require_scope(token, "read_free_busy", "create_event" if filters.get("only_managed") else None)
        open_channels = [c for c in state.channels_of(account.sub) if c.open]
        for chan in open_channels:
            if chan.callback_url == url and chan.filters == filters:
                return 200, {"channel": chan.body()}
        if len(open_channels) >= MAX_CHANNELS_PER_ACCOUNT:
            raise single_error(
                422,
                "callback_url",
                "errors.too_many_channels",
                f"an account may have at most {MAX_CHANNELS_PER_ACCOUNT} open channels",
            )
        chan = Channel(
            channel_id=f"chn_{random_hex(24)}",
            sub=account.sub,
            callback_url=url,
            filters=filters,
            created=state.now(),
        )
        state.add_channel(chan)
        state.emit(chan, {"type": "verification"})
        return 200, {"channel": chan.body()}


def list_channels(state: EmulatorState, account: Account, token: AccessToken) -> Result:
    with state.lock:
        return 200, {
            "channels": [c.body() for c in state.channels_of(account.sub) if c.open]
        }


def close_channel(state: EmulatorState, account: Account, token: AccessToken, channel_id: str) -> Result:
    with state.lock:
        chan = state.channels.get(channel_id)
        if chan is None or chan.sub != account.sub or not chan.open:
            raise single_error(404, "channel_id", "errors.not_found", f"channel {channel_id} was not found")
        chan.open = False
        return 202, None
