"""``CronofyEmulator``: the public Python face of the emulator, and its HTTP server's lifecycle."""

from __future__ import annotations

import threading

from .control import build_control_router
from .core import Emulator
from .routes import build_api_router
from .server import EmulatorHTTPServer


class CronofyEmulator(Emulator):
    """A strict, in-process Cronofy API + OAuth app host for tests, demos and benchmarks.

    >>> emu = CronofyEmulator(); emu.start()
    >>> emu.add_calendar_account("google", "jane@example.com")
    >>> ...; emu.stop()

    Everything but the server is ``Emulator`` (``core.py``); the calendar owner's actions are listed
    in ``actions.py``.
    """

    _server: EmulatorHTTPServer | None = None  # while started
    _thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------
    # lifecycle
    # ------------------------------------------------------------------------------------------
    def start(self) -> CronofyEmulator:
        if self._server is not None:
            return self
        self._server = EmulatorHTTPServer(
            (self.host, self.port), self, build_api_router(self), build_control_router(self)
        )
        self.port = self._server.server_address[1]
        self.notifier.start()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="cronofy-emulator-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server.close_connections()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.notifier.stop()
        self.enterprise.deliveries.stop()

    def __enter__(self) -> CronofyEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
