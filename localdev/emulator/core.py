"""``Emulator``: the emulated Cronofy tenant with everything around it except the HTTP server.

It wires the state, the notifier, Enterprise Connect, faults, the rate limiter and the request log
together and is what every route builder (``routes.py``, ``control.py``) and the HTTP handler
(``server.py``) are given. ``CronofyEmulator`` (``emulator.py``) adds starting and stopping the
server. The calendar owner's actions (``actions.ACTIONS``) become methods here, one per action.
"""

from __future__ import annotations

import functools
import threading
import time
from datetime import datetime
from typing import Any

from .actions import ACTIONS, Action
from .enterprise import Enterprise
from .errors import EmulatorError
from .notify import Notifier
from .realism import Realism
from .state import EmulatorState
from .timefmt import fmt_time
from .traffic import FaultInjector, RateLimiter
from .web import Request


class Emulator:
    """The tenant and its instruments; see ``CronofyEmulator`` for the documented entry point."""

    def __init__(
        self,
        client_id: str = "local-client",
        client_secret: str = "local-secret",  # noqa: S107 - local emulator default
        host: str = "127.0.0.1",
        port: int = 0,
        access_token_ttl: int = 3600,
        page_size: int = 50,
        rotate_refresh_tokens: bool = True,
        rate_limit: tuple[int, int] | None = None,
        notification_timeout: float = 5.0,
        verbose: bool = False,
        realism: Realism | dict[str, Any] | bool | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.host = host
        self.port = port
        self.verbose = verbose
        self.realism = Realism.build(realism)
        self.notifier = Notifier(
            lambda: list(self.state.client_secrets),
            timeout=notification_timeout,
            clock=lambda: self.state.clock.precise(),
            realism=lambda: self.realism,
            on_give_up=lambda meta: self.state.give_up_channel(meta),
        )
        self.state = EmulatorState(
            client_id=client_id,
            client_secret=client_secret,
            access_token_ttl=access_token_ttl,
            page_size=page_size,
            rotate_refresh_tokens=rotate_refresh_tokens,
            notify=self.notifier.enqueue,
            base_url=lambda: self.base_url,
            realism=self.realism,
        )
        self.notifier.on_tick = self.state.tick
        self.enterprise = Enterprise(self.state)  # Enterprise Connect (enterprise.py)
        self.faults = FaultInjector()
        self.limiter = RateLimiter(rate_limit)
        self._log: list[dict[str, Any]] = []
        self._log_lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def reset(self) -> None:
        """Forget every account, token, event and channel; clear faults, logs and statistics."""
        self.state.reset()
        self.notifier.clear_queue()
        self.enterprise.reset()
        self.faults.clear()
        self.limiter.reset_stats()
        self.clear_request_log()
        self.notifier.clear_log()

    # ------------------------------------------------------------------------------------------
    # clock
    # ------------------------------------------------------------------------------------------
    def now(self) -> datetime:
        """The emulator clock: UTC, whole seconds (real time plus any advance)."""
        return self.state.now()

    def now_iso(self) -> str:
        return fmt_time(self.state.now())

    def advance_clock(self, seconds: float) -> datetime:
        now = self.state.clock.advance(seconds)
        self.state.tick()  # writes and initial syncs now due land; the notifier sees due pushes
        return now

    # ------------------------------------------------------------------------------------------
    # realism (issue 12): asynchronous writes, outside-only last_modified, push retries,
    # duplicates and reordering, secret rotation, initial sync, window bounds
    # ------------------------------------------------------------------------------------------
    def configure(self, **changes: Any) -> dict[str, Any]:
        """Change realism settings at runtime (names: ``Realism`` fields). Returns them all."""
        with self.state.lock:
            self.realism = self.realism.updated(**changes)
            self.state.realism = self.realism
            if "push_seed" in changes:
                self.notifier.reseed(self.realism.push_seed)
            return self.realism.as_dict()

    def settle(self, timeout: float = 10.0) -> bool:
        """Everything Cronofy would do by itself, done now: land every pending write, finish every
        running initial sync, deliver every queued push (retries without their backoff, until
        delivered or the channel is given up). False if pushes were still pending at ``timeout``."""
        self.state.tick(flush=True)
        if not self.notifier.running:
            return self.notifier.pending == 0
        return self.notifier.flush(timeout)

    flush = settle

    @property
    def pending_writes(self) -> int:
        with self.state.lock:
            return len(self.state.pending_writes)

    def begin_secret_rotation(self, new_secret: str) -> list[str]:
        """A second client secret becomes active: pushes carry two comma-separated HMACs (old, new)
        and the OAuth endpoints accept either secret."""
        return self.state.begin_secret_rotation(new_secret)

    def complete_secret_rotation(self) -> list[str]:
        """The old secret is retired: only the new one signs and authenticates."""
        secrets = self.state.complete_secret_rotation()
        self.client_secret = secrets[0]
        return secrets

    # ------------------------------------------------------------------------------------------
    # seeding (add_calendar_account, update_calendar and issue_code are actions, see the end)
    # ------------------------------------------------------------------------------------------
    def add_enterprise_domain(self, provider: str, domain: str, admin_email: str | None = None) -> dict[str, Any]:
        """A Google Workspace (``google``) or Microsoft 365 (``microsoft``) domain whose administrator can
        authorize Enterprise Connect; its members are the seeded accounts with e-mail addresses there."""
        return self.enterprise.add_domain(provider, domain, admin_email)

    def enterprise_state(self) -> dict[str, Any]:
        """Domains, service accounts (scopes, requests made, members asked for) and callbacks made."""
        return self.enterprise.summary()

    def profiles(self) -> list[dict[str, Any]]:
        return self.state.list_profiles()

    # ------------------------------------------------------------------------------------------
    # faults and limits
    # ------------------------------------------------------------------------------------------
    def add_fault(
        self,
        path_prefix: str = "/v1/",
        method: str | None = None,
        status: int | None = 429,
        retry_after: int | None = None,
        count: int | None = 1,
        latency_ms: int = 0,
        mode: str = "status",
    ) -> dict[str, Any]:
        """Make the next ``count`` matching requests fail (``None`` = until cleared).

        mode ``status``: sleep ``latency_ms``, then answer ``status`` (``None`` = just add latency and
        handle the request normally). ``timeout``: hang ``latency_ms``, then handle it normally (the
        write happens even though a client with a shorter timeout gave up). ``drop``: close the
        connection without an answer; the request is not applied.
        """
        return self.faults.add(
            path_prefix=path_prefix,
            method=method,
            status=status,
            retry_after=retry_after,
            count=count,
            latency_ms=latency_ms,
            mode=mode,
        )

    def clear_faults(self) -> None:
        self.faults.clear()

    def set_rate_limit(self, rate_limit: tuple[int, int] | None) -> None:
        self.limiter.set_limits(rate_limit)

    @property
    def stats(self) -> dict[str, Any]:
        return self.limiter.stats

    # ------------------------------------------------------------------------------------------
    # inspection
    # ------------------------------------------------------------------------------------------
    def record_request(
        self, request: Request, status: int | None, started: float, fault: str | None
    ) -> None:
        entry = {
            "method": request.method,
            "path": request.path,
            "query": {k: list(v) for k, v in request.query.items()},
            "status": status,
            "at": started,
            "duration_ms": round((time.time() - started) * 1000, 1),
            "sub": request.sub,
        }
        if fault:
            entry["fault"] = fault
        with self._log_lock:
            self._log.append(entry)

    @property
    def request_log(self) -> list[dict[str, Any]]:
        with self._log_lock:
            return [dict(e) for e in self._log]

    def clear_request_log(self) -> None:
        with self._log_lock:
            self._log.clear()

    def count_requests(self, method: str | None = None, path_prefix: str | None = None) -> int:
        with self._log_lock:
            return sum(
                1
                for e in self._log
                if (method is None or e["method"] == method.upper())
                and (path_prefix is None or e["path"].startswith(path_prefix))
            )

    def events(self, calendar_id: str, include_deleted: bool = False) -> list[dict[str, Any]]:
        return self.state.events(calendar_id, include_deleted=include_deleted)

    def account_state(self, sub: str) -> dict[str, Any]:
        return self.state.account_state(sub)

    def channels(self, sub: str | None = None) -> list[dict[str, Any]]:
        return self.state.channels_list(sub)

    def state_summary(self) -> dict[str, Any]:
        summary = self.state.summary()
        summary["stats"] = self.stats
        summary["faults"] = self.faults.list()
        return summary

    @property
    def notifications(self) -> list[dict[str, Any]]:
        return self.notifier.log

    def clear_notifications(self) -> None:
        self.notifier.clear_log()

    def wait_for_notifications(self, timeout: float = 5) -> bool:
        """Block until every queued notification was delivered (retries included, their backoff
        skipped) or its channel given up. False on timeout. Pending writes are not landed (see
        ``settle``)."""
        if not self.notifier.running:
            raise EmulatorError("the emulator is not started; notifications are not being delivered")
        return self.notifier.wait_idle(timeout)


def _delegate(action: Action) -> Any:
    """The facade method of an action: the action run on this emulator's state."""

    @functools.wraps(action.run)
    def method(self: Emulator, *args: Any, **kwargs: Any) -> Any:
        return action.run(self.state, *args, **kwargs)

    return method


# add_calendar_account, update_calendar, issue_code, move_event, delete_event_as_user,
# add_external_event, set_zoneinfo, disconnect_profile, reconnect_profile, revoke_account,
# close_channel, drift_event: see actions.py for their parameters.
for _action in ACTIONS:
    setattr(Emulator, _action.name, _delegate(_action))
