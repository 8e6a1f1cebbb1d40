"""Messages to the core platform must match shared/design/messages.schema.json exactly."""

import json
from pathlib import Path

from jsonschema import Draft202012Validator

SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "design" / "messages.schema.json"
_validator = Draft202012Validator(json.loads(SCHEMA.read_text()))


def assert_valid_message(message: dict) -> None:
    errors = sorted(_validator.iter_errors(message), key=str)
    assert not errors, [e.message for e in errors]
