"""HTML pages of the emulated Cronofy app host: the consent page, its error page and relink."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from html import escape

from .model import Profile

HIDDEN_FIELDS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "provider_name",
    "avoid_linking",
)

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 34rem; margin: 3rem auto; color: #1d2433; }
h1 { font-size: 1.3rem; } .scopes li { font-family: monospace; }
.account { display: block; padding: .5rem; border: 1px solid #ccd; border-radius: 4px; margin: .4rem 0; }
.error { color: #a40000; border: 1px solid #a40000; padding: .5rem; border-radius: 4px; }
button { padding: .5rem 1.4rem; margin-right: .5rem; }
"""


def _page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>{body}</body></html>\n"
    )


def render_error(message: str) -> str:
    body = (
        "<h1>Authorization request rejected</h1>"
        f'<p class="error" id="error">{escape(message)}</p>'
        "<p>The application sent an invalid authorization request. Nothing was shared.</p>"
    )
    return _page("Cronofy emulator - authorization error", body)


def render_consent(
    params: Mapping[str, str],
    profiles: Iterable[Profile],
    *,
    error: str | None = None,
    selected: str | None = None,
) -> str:
    profiles = list(profiles)
    hidden = "".join(
        f'<input type="hidden" name="{name}" value="{escape(params[name])}">'
        for name in HIDDEN_FIELDS
        if params.get(name) is not None
    )
    if selected is None and len(profiles) == 1:
        selected = profiles[0].profile_id
    choices = []
    for profile in profiles:
        checked = " checked" if profile.profile_id == selected else ""
        pid = escape(profile.profile_id)
        choices.append(
            f'<label class="account" for="profile-{pid}" data-provider="{escape(profile.provider_name)}">'
            f'<input type="radio" class="account-radio" name="profile_id" id="profile-{pid}" '
            f'value="{pid}"{checked}> '
            f'<span class="account-email">{escape(profile.email)}</span></label>'
        )
    if not choices:
        choices.append('<p id="no-accounts">No calendar accounts are available for this provider.</p>')
    scopes = "".join(f"<li>{escape(s)}</li>" for s in params.get("scope", "").split())
    error_html = f'<p class="error" id="error">{escape(error)}</p>' if error else ""
    body = (
        "<h1>Allow access to your calendar</h1>"
        f'<p>The application <strong id="client-id">{escape(params.get("client_id", ""))}</strong> '
        "is asking Cronofy for access to your calendar.</p>"
        f"{error_html}"
        '<form method="post" action="/oauth/authorize" id="consent-form">'
        f"{hidden}"
        '<fieldset id="accounts"><legend>Choose the account to connect</legend>'
        f"{''.join(choices)}</fieldset>"
        f'<p>Requested access:</p><ul class="scopes">{scopes}</ul>'
        '<button type="submit" name="decision" value="allow" id="allow">Allow</button>'
        '<button type="submit" name="decision" value="deny" id="deny">Deny</button>'
        "</form>"
    )
    return _page("Cronofy emulator - authorize", body)


def render_relink(profiles: Iterable[Profile], done: bool = False) -> str:
    profiles = list(profiles)
    if done:
        body = '<h1>Calendar reconnected</h1><p id="relinked">Your calendar account is connected again.</p>'
        return _page("Cronofy emulator - relinked", body)
    if not profiles:
        return _page(
            "Cronofy emulator - relink", '<h1>Nothing to relink</h1><p id="error">Unknown account.</p>'
        )
    rows = "".join(
        f'<li class="account">{escape(p.email)} ({escape(p.provider_name)})'
        f'<input type="hidden" name="profile_id" value="{escape(p.profile_id)}"></li>'
        for p in profiles
    )
    body = (
        "<h1>Reconnect your calendar</h1>"
        f'<form method="post" id="relink-form"><ul>{rows}</ul>'
        '<button type="submit" id="relink">Reconnect</button></form>'
    )
    return _page("Cronofy emulator - relink", body)
