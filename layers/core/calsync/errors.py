"""What the core refuses, and why, in its own words: no HTTP status in here.

Every refusal of a request is a `Refusal` of one kind (the request is invalid, the caller is not
known or not allowed, the thing does not exist, or it is in a state that does not allow it), with a
`code` a client can act on and a message for a person. The API functions map the kinds to HTTP
answers (calsync.http_errors); queue workers never see these.

`ConflictError` is different: a conditional write lost a race or found the item in another state.
Storage raises it; callers retry, or the API answers that something changed meanwhile.
"""

from __future__ import annotations


class Refusal(Exception):
    """A request the core will not carry out. `code` names why (the API's error code)."""

    code = "refused"

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class MalformedRequest(Refusal):
    """The request is not even of the kind it claims to be (e.g. a callback without its result)."""

    code = "malformed_request"


class InvalidRequest(Refusal):
    """The request itself is wrong: fix it before asking again."""

    code = "invalid_request"


class Unauthenticated(Refusal):
    """No SolarNexus session names the caller."""

    code = "unauthorized"


class Forbidden(Refusal):
    """The caller may not do this (another org's data, or not an admin)."""

    code = "forbidden"

    def __init__(self, message: str = "not allowed for this user", code: str | None = None):
        super().__init__(message, code)


class NotFound(Refusal):
    """What the request is about does not exist."""

    code = "not_found"


class InvalidState(Refusal):
    """What the request is about exists, but its state does not allow this now."""

    code = "conflict"


class NeedsReauth(InvalidState):
    """The calendar authorization is gone: the user must connect again."""

    code = "needs_reauth"


class EnterpriseConnectNotActive(InvalidState):
    """No administrator has authorized Enterprise Connect for the org (or it ended)."""

    code = "enterprise_connect_not_active"


class TryLater(Refusal):
    """Not now, and nothing was used up: the same request may succeed after `retry_after` seconds."""

    code = "rate_limited"

    def __init__(self, message: str, retry_after: int, code: str | None = None):
        super().__init__(message, code)
        self.retry_after = retry_after


class ConflictError(Exception):
    """A conditional write lost a race or found the item in another state."""


class AccountInUse(ConflictError):
    """The calendar account is already connected by another SolarNexus user."""


class MilestoneOrgMismatch(ValueError):
    """A milestone message names a milestone id that belongs to another org."""
