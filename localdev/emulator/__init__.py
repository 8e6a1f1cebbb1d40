"""A strict local emulator of the Cronofy API used by tests, the demo and benchmarks.

from localdev.emulator import CronofyEmulator
emu = CronofyEmulator(client_id="local-client", client_secret="local-secret").start()
...
emu.stop()
"""

from .emulator import CronofyEmulator
from .errors import ApiError, EmulatorError
from .model import DEFAULT_SCOPE
from .notify import SIGNATURE_HEADER, encode_notification, sign_body

__all__ = [
    "DEFAULT_SCOPE",
    "SIGNATURE_HEADER",
    "ApiError",
    "CronofyEmulator",
    "EmulatorError",
    "encode_notification",
    "sign_body",
]
