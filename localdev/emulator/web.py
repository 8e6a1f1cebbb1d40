"""HTTP primitives shared by every route of the emulator: the parsed request, the response, and a small
router matching ``/path/{param}`` patterns. Nothing here knows the emulator."""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, single_error

JSON_TYPE = "application/json; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Any
    body: bytes
    sub: str | None = None

    def json(self) -> Any:
        """The JSON body, ``None`` when there is no body; 415/422 on a non-JSON body."""
        if not self.body.strip():
            return None
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(
                415,
                {
                    "error": "unsupported_media_type",
                    "error_description": "send JSON with Content-Type: application/json",
                },
            )
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise single_error(422, "body", "errors.invalid", "the request body is not valid JSON") from None

    def form(self) -> dict[str, str]:
        """A form-encoded or JSON body as a flat dict of strings (the OAuth endpoints take both)."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/json":
            try:
                data = json.loads(self.body.decode("utf-8") or "{}")
            except (UnicodeDecodeError, ValueError):
                raise ApiError(
                    400, {"error": "invalid_request", "error_description": "invalid JSON"}
                ) from None
            if not isinstance(data, dict):
                raise ApiError(400, {"error": "invalid_request", "error_description": "expected an object"})
            return {
                k: str(v) for k, v in data.items() if isinstance(v, str | int) and not isinstance(v, bool)
            }
        try:
            pairs = urllib.parse.parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise ApiError(400, {"error": "invalid_request"}) from None
        return dict(pairs)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = JSON_TYPE
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False


def json_response(status: int, data: Any = None, headers: dict[str, str] | None = None) -> Response:
    body = b"" if data is None else json.dumps(data).encode("utf-8")
    return Response(status, body, JSON_TYPE, dict(headers or {}))


def html_response(status: int, page: str) -> Response:
    return Response(status, page.encode("utf-8"), HTML_TYPE)


def redirect(location: str) -> Response:
    return Response(302, b"", HTML_TYPE, {"Location": location})


Handler = Callable[..., Response]


class Router:
    def __init__(self) -> None:
        self._routes: list[tuple[re.Pattern[str], dict[str, Handler]]] = []

    def add(self, method: str, pattern: str, handler: Handler) -> None:
        regex = re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")
        for existing, methods in self._routes:
            if existing.pattern == regex.pattern:
                methods[method] = handler
                return
        self._routes.append((regex, {method: handler}))

    def dispatch(self, request: Request) -> Response:
        for regex, methods in self._routes:
            match = regex.match(request.path)
            if not match:
                continue
            handler = methods.get(request.method)
            if handler is None:
                return json_response(
                    405, {"error": "method_not_allowed"}, {"Allow": ", ".join(sorted(methods))}
                )
            args = {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            return handler(request, **args)
        return json_response(404, {"error": "not_found", "error_description": f"no route for {request.path}"})



def redirect_with(uri: str, params: dict[str, str | None]) -> str:
    """``uri`` with ``params`` (those not None) added to its query."""
    parts = urllib.parse.urlsplit(uri)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    query += [(k, v) for k, v in params.items() if v is not None]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))
