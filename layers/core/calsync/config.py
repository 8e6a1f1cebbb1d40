"""One config loader: environment variables validated once per cold start.

In AWS the Cronofy client secret and the OAuth-state signing key come from Secrets Manager
(`CRONOFY_SECRET_ARN`, read through Powertools Parameters with caching); local runs and tests
set `CRONOFY_CLIENT_SECRET` and `STATE_SIGNING_KEY` directly.
"""

from __future__ import annotations

import json
import os
from functools import cache

from pydantic import BaseModel, Field, SecretStr, field_validator

DATA_CENTERS = {
    "us": ("https://api.cronofy.com", "https://app.cronofy.com"),
    "uk": ("https://api-uk.cronofy.com", "https://app-uk.cronofy.com"),
    "de": ("https://api-de.cronofy.com", "https://app-de.cronofy.com"),
    "au": ("https://api-au.cronofy.com", "https://app-au.cronofy.com"),
    "ca": ("https://api-ca.cronofy.com", "https://app-ca.cronofy.com"),
    "sg": ("https://api-sg.cronofy.com", "https://app-sg.cronofy.com"),
}


class Settings(BaseModel):
    table_name: str
    kms_key_id: str
    public_api_url: str = Field(description="the stage's public API URL: OAuth redirect and channel callbacks")
    web_app_url: str
    cronofy_client_id: str
    cronofy_data_center: str = "us"
    cronofy_api_url: str | None = None  # local override (emulator)
    cronofy_app_url: str | None = None  # local override (emulator)
    cronofy_secret_arn: str | None = None
    cronofy_client_secret: SecretStr | None = None
    state_signing_key: SecretStr | None = None
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
    # Cronofy requests one reconciler run may spend (it runs every 5 minutes by default).
    reconcile_request_budget: int = 150

    @field_validator("cronofy_data_center")
    @classmethod
    def _known_data_center(cls, value: str) -> str:
        if value not in DATA_CENTERS:
            raise ValueError(f"unknown Cronofy data center {value!r}; one of {sorted(DATA_CENTERS)}")
        return value

    @field_validator("public_api_url", "web_app_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

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
            raise RuntimeError("set CRONOFY_SECRET_ARN, or CRONOFY_CLIENT_SECRET and STATE_SIGNING_KEY locally")
        return self.cronofy_client_secret.get_secret_value(), self.state_signing_key.get_secret_value()


@cache
def get_settings() -> Settings:
    fields = Settings.model_fields
    values = {name: os.environ[name.upper()] for name in fields if os.environ.get(name.upper())}
    return Settings(**values)
