"""Pages the local stack serves beside the API, on the same origin (local development only).

- `/app/profile`: a minimal stand-in for the SolarNexus web app's user profile, with the Calendar
  Integration section (plain HTML + vanilla JS in this folder, no build step). The OAuth callback
  redirects here (`WEB_APP_URL` is `{router}/app`).
- `/app/session?as=USER&org=ORG[&roles=admin,member]`: mints a session JWT with the local issuer,
  standing in for SolarNexus sign-in. The page keeps it in sessionStorage for the tab.
- `/docs`: Swagger UI (assets from the npm package swagger-ui-dist in node_modules, no CDN).
- `/openapi.json`: the committed OpenAPI document (openapi/openapi.json, `make openapi`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, quote

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OPENAPI_DOCUMENT = ROOT / "openapi" / "openapi.json"
SWAGGER_UI_DIST = ROOT / "node_modules" / "swagger-ui-dist"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".png": "image/png",
}
# Only these files are served: no path from the URL ever reaches the file system.
_APP_FILES = {"profile.js", "profile.css", "crew.js"}
_SWAGGER_FILES = {"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                  "favicon-32x32.png", "favicon-16x16.png"}
_ID = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")

Answer = tuple[int, bytes, dict[str, str]]
# (user_id, org_id, roles) -> a session JWT
MintSession = Callable[[str, str, list[str]], str]


def _file(path: Path) -> Answer:
    return 200, path.read_bytes(), {"Content-Type": _TYPES[path.suffix], "Cache-Control": "no-cache"}


def _json(status: int, payload: dict) -> Answer:
    return status, json.dumps(payload).encode(), {"Content-Type": "application/json", "Cache-Control": "no-store"}


def _text(status: int, text: str) -> Answer:
    return status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"}


def _session(mint_session: MintSession, query: str) -> Answer:
    params = {k: v[0] for k, v in parse_qs(query).items()}
    user_id, org_id = params.get("as", ""), params.get("org", "")
    roles = [r for r in params.get("roles", "member").split(",") if r]
    if not _ID.match(user_id) or not _ID.match(org_id) or not all(_ID.match(r) for r in roles):
        return _json(400, {"error": {"code": "invalid_request",
                                     "message": "use /app/session?as=USER_ID&org=ORG_ID[&roles=admin,member]"}})
    token = mint_session(user_id, org_id, roles)
    return _json(200, {"token": token, "user_id": user_id, "org_id": org_id, "roles": roles})


def _docs_asset(name: str) -> Answer:
    if name == "docs.js":
        return _file(HERE / "docs.js")
    if name not in _SWAGGER_FILES:
        return _text(404, "not found")
    if not (SWAGGER_UI_DIST / name).is_file():
        return _text(503, "Swagger UI is not installed: run `npm install` (package.json devDependencies)")
    return _file(SWAGGER_UI_DIST / name)


def respond(mint_session: MintSession, method: str, path: str, query: str) -> Answer:
    """(status, body, headers) for a request under /app, /docs or /openapi.json."""
    if method != "GET":
        return _text(405, "method not allowed")
    if path in ("/app", "/app/"):
        location = "/app/profile" + (f"?{query}" if query else "")
        return 302, b"", {"Location": quote(location, safe="/?&=%")}
    if path == "/app/session":
        return _session(mint_session, query)
    if path.startswith("/app/static/"):
        name = path.removeprefix("/app/static/")
        return _file(HERE / name) if name in _APP_FILES else _text(404, "not found")
    if path in ("/app/crew", "/app/crew/"):  # the admin's Enterprise Connect settings (issue 15)
        return _file(HERE / "crew.html")
    if path.startswith("/app/"):
        # Every page of the stand-in web app is the profile page (a `return_to` such as
        # /settings/calendar lands on it too).
        return _file(HERE / "profile.html")
    if path in ("/docs", "/docs/"):
        return _file(HERE / "docs.html")
    if path.startswith("/docs/"):
        return _docs_asset(path.removeprefix("/docs/"))
    if path == "/openapi.json":
        if not OPENAPI_DOCUMENT.is_file():
            return _text(503, "openapi/openapi.json is missing: run `make openapi`")
        return _file(OPENAPI_DOCUMENT)
    return _text(404, "not found")
