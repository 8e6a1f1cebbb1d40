"""Each local invocation logs with its own keys, as it would in its own Lambda process.

Powertools keeps the Logger's keys (function_name, request id, correlation_id) on one formatter
object per process. In Lambda that is right: a process runs one invocation at a time. The local
stack runs every function in one process, on the router's, the pump's and Step Functions' threads,
so one function's `inject_lambda_context` could relabel another's lines mid-invocation (a backfill
logging as the webhook intake, a notification carrying the backfill's correlation id).

`DevStack.invoke` already runs each invocation in a fresh `contextvars.Context`; here the formatter's
keys move into a ContextVar, so each invocation (and each thread outside one) sees only its own.
Production code is untouched: this is applied by the local stack only.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_KEYS: ContextVar[dict[str, Any] | None] = ContextVar("localdev_logger_keys", default=None)


def keys_per_invocation(logger: Any) -> None:
    """Give `logger`'s formatter one set of keys per context (idempotent)."""
    formatter = logger.registered_formatter
    base = type(formatter)
    if getattr(base, "_keys_per_invocation", False):
        return
    initial: dict[str, Any] = dict(formatter.__dict__.get("log_format") or {})

    def get(self: Any) -> dict[str, Any]:
        keys = _KEYS.get()
        if keys is None:  # the first line in this context starts from the process's keys
            keys = dict(initial)
            _KEYS.set(keys)
        return keys

    def set_(self: Any, value: dict[str, Any]) -> None:
        _KEYS.set(value)

    formatter.__class__ = type(base.__name__, (base,), {
        "_keys_per_invocation": True, "log_format": property(get, set_),
    })
