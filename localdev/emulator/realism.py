"""The inconvenient parts of Cronofy, each switchable (issue 12). On by default everywhere.

    CronofyEmulator(realism={"write_delay": 0})            # one behaviour off for one emulator
    CronofyEmulator(realism=Realism.off())                  # the old, kind emulator
    emu.configure(push_duplicate_rate=0.5)                  # change at runtime
    CRONOFY_EMULATOR_REALISM=off                            # every emulator in the process, kind

Times are in seconds of the emulator clock (real time + advance_clock, and whatever time-machine
does to datetime.now), so a test can step past them with advance_clock() or settle().
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields, replace
from typing import Any


@dataclass
class Realism:
    # Upserts/deletes/bulk deletes/batch entries answer 202 and are applied this many seconds later.
    write_delay: float = 1.0
    # Read Events `last_modified` selects events changed outside the application (by the user or
    # their calendar), not the application's own writes.
    last_modified_external_only: bool = True
    # Push delivery: a non-2xx answer or a timeout is retried with exponential backoff
    # (push_backoff, 2x, 4x, ...) up to push_max_attempts; then the channel is closed.
    push_retries: bool = True
    push_max_attempts: int = 5
    push_backoff: float = 2.0
    # Some deliveries arrive twice, some later than the ones after them (seeded).
    push_duplicate_rate: float = 0.1
    push_reorder_rate: float = 0.1
    push_reorder_delay: float = 1.5
    push_seed: int = 12
    # A profile's first sync completes this long after its first authorization and then sends
    # `profile_initial_sync_completed` to the account's open channels. None: never.
    initial_sync_delay: float | None = 2.0
    # Free/busy `from`/`to` bounded to 42 days back / 201 days ahead (422 beyond); external events
    # outside Cronofy's sync window are not returned by Read Events or free/busy.
    enforce_windows: bool = True

    @classmethod
    def off(cls) -> Realism:
        return cls(write_delay=0.0, last_modified_external_only=False, push_retries=False,
                   push_duplicate_rate=0.0, push_reorder_rate=0.0, initial_sync_delay=None,
                   enforce_windows=False)

    @classmethod
    def default(cls) -> Realism:
        """On, unless CRONOFY_EMULATOR_REALISM=off|0|false."""
        if os.environ.get("CRONOFY_EMULATOR_REALISM", "on").strip().lower() in ("off", "0", "false", "no"):
            return cls.off()
        return cls()

    @classmethod
    def build(cls, value: Realism | dict[str, Any] | bool | None) -> Realism:
        if isinstance(value, Realism):
            return replace(value)
        if value is False:
            return cls.off()
        if value is None or value is True:
            return cls.default() if value is None else cls()
        return cls.default().updated(**value)

    def updated(self, **changes: Any) -> Realism:
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            from .errors import EmulatorError

            raise EmulatorError(f"unknown realism setting(s): {', '.join(unknown)}")
        out = replace(self, **changes)
        if out.write_delay < 0 or out.push_backoff < 0 or out.push_max_attempts < 1:
            from .errors import EmulatorError

            raise EmulatorError("write_delay and push_backoff must be >= 0, push_max_attempts >= 1")
        return out

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
