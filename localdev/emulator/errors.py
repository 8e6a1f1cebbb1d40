"""Error types shared by the emulator modules."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An HTTP error answer from the emulated Cronofy API.

    ``body`` is a JSON-serialisable object, or ``None`` for an empty body.
    """

    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}: {body!r}")
        self.status = status
        self.body = body
        self.headers = dict(headers or {})


class EmulatorError(ValueError):
    """A misuse of the control API (unknown id, bad argument). ``status`` is the HTTP mapping."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_entry(key: str, description: str) -> dict[str, str]:
    return {"key": key, "description": description}


class FieldErrors:
    """Collects Cronofy style validation errors: ``{"errors": {field: [{key, description}]}}``."""

    def __init__(self) -> None:
        self.errors: dict[str, list[dict[str, str]]] = {}

    def add(self, field: str, key: str, description: str) -> None:
        self.errors.setdefault(field, []).append(error_entry(key, description))

    def required(self, field: str, description: str | None = None) -> None:
        self.add(field, "errors.required", description or f"{field} must be specified")

    def invalid(self, field: str, description: str) -> None:
        self.add(field, "errors.invalid", description)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def body(self) -> dict[str, Any]:
        return {"errors": self.errors}

    def raise_if_any(self, status: int = 422) -> None:
        if self.errors:
            raise ApiError(status, self.body())


def single_error(status: int, field: str, key: str, description: str) -> ApiError:
    return ApiError(status, {"errors": {field: [error_entry(key, description)]}})
