"""One config loader: environment variables read and validated once per cold start.

A frozen dataclass rather than a pydantic model on purpose: every function imports this, and the
webhook intake must start inside Cronofy's few seconds without paying for pydantic (~40 ms).

In AWS the Cronofy client secret and the OAuth-state signing key come from Secrets Manager
(`CRONOFY_SECRET_ARN`, read through Powertools Parameters with caching); local runs and tests
set `CRONOFY_CLIENT_SECRET` and `STATE_SIGNING_KEY` directly.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from functools import cache
from typing import Any

DATA_CENTERS = {
    "us": ("https://api.cronofy.com", "https://app.cronofy.com"),
    "uk": ("https://api-uk.cronofy.com", "https://app-uk.cronofy.com"),
    "de": ("https://api-de.cronofy.com", "https://app-de.cronofy.com"),
    "au": ("https://api-au.cronofy.com", "https://app-au.cronofy.com"),
    "ca": ("https://api-ca.cronofy.com", "https://app-ca.cronofy.com"),
    "sg": ("https://api-sg.cronofy.com", "https://app-sg.cronofy.com"),
}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    table_name: str
    kms_key_id: str
    public_api_url: str  # the stage's public API URL: OAuth redirect and channel callbacks
    web_app_url: str
    cronofy_client_id: str
    cronofy_data_center: str = "us"
    cronofy_api_url: str | None = None  # local override (emulator)
    cronofy_app_url: str | None = None  # local override (emulator)
    cronofy_secret_arn: str | None = None
    cronofy_client_secret: str | None = field(default=None, repr=False)
    state_signing_key: str | None = field(default=None, repr=False)
    calendar_changes_queue_url: str | None = None
    cleanup_queue_url: str | None = None
    notifications_queue_url: str | None = None
    backfill_state_machine_arn: str | None = None
    oauth_state_ttl_seconds: int = 600
    http_timeout_seconds: float = 8.0
    # One limiter for the whole application (Cronofy: 50/s and 500/min per application, all users).
    rate_limit_per_second: float = 50
    rate_limit_per_minute: float = 500
    # Short waits for a token are slept; longer ones hand queue work back to SQS (interactive routes
    # may wait a little longer).
    cronofy_max_wait_seconds: float = 1.0
    # The most Cronofy requests one reconciler run may spend (it runs every 5 minutes by default); within
    # it, a run only spends what the shared limiter has left after live work.
    reconcile_request_budget: int = 1000
    # Busy data not refreshed for this long is flagged stale to the scheduler and the admin
    # (calsync.freshness). Push notifications keep it current; a quiet calendar's is rebuilt weekly by the
    # reconciler: a day past that.
    busy_stale_after_minutes: int = 8 * 24 * 60

    def __post_init__(self) -> None:
        if self.cronofy_data_center not in DATA_CENTERS:
            raise ConfigError(
                f"unknown Cronofy data center {self.cronofy_data_center!r}; one of {sorted(DATA_CENTERS)}")
        for name in ("public_api_url", "web_app_url"):
            object.__setattr__(self, name, getattr(self, name).rstrip("/"))

    @classmethod
    def from_env(cls, environ=os.environ) -> Settings:
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = environ.get(f.name.upper())
            if not raw:
                if f.default is dataclasses.MISSING:
                    raise ConfigError(f"{f.name.upper()} is required")
                continue
            kind = f.type if isinstance(f.type, str) else f.type.__name__
            try:
                values[f.name] = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
            except ValueError as error:
                raise ConfigError(f"{f.name.upper()} must be a {kind}, got {raw!r}") from error
        return cls(**values)

    @property
    def api_base_url(self) -> str:
        return (self.cronofy_api_url or DATA_CENTERS[self.cronofy_data_center][0]).rstrip("/")

    @property
    def app_base_url(self) -> str:
        return (self.cronofy_app_url or DATA_CENTERS[self.cronofy_data_center][1]).rstrip("/")

    @property
    def oauth_redirect_uri(self) -> str:
        return f"{self.public_api_url}/v1/calendar/oauth/callback"

    def secrets(self) -> tuple[str, str]:
        """(Cronofy client secret, state signing key)."""
        if self.cronofy_secret_arn:
            from aws_lambda_powertools.utilities import parameters

            raw = parameters.get_secret(self.cronofy_secret_arn, max_age=300)
            values = json.loads(raw)
            return values["client_secret"], values["state_signing_key"]
        if not self.cronofy_client_secret or not self.state_signing_key:
            raise ConfigError("set CRONOFY_SECRET_ARN, or CRONOFY_CLIENT_SECRET and STATE_SIGNING_KEY locally")
        return self.cronofy_client_secret, self.state_signing_key


@cache
def get_settings() -> Settings:
    return Settings.from_env()
