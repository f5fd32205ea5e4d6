"""Errors that reach HTTP clients, in one tree.

    HubError (status, code, retryable)
    ├── BadRequest            400 bad_request / invalid_channel / invalid_event
    ├── Unauthorized          401 unauthorized
    ├── Forbidden             403 forbidden
    ├── NotFound              404 not_found
    ├── Conflict              409 conflict
    ├── PayloadTooLarge       413 payload_too_large
    ├── TooManyRequests       429 rate_limited / too_many_connections
    └── Unavailable           503 unavailable / broker_unavailable

Foreign errors (redis, JWT, pydantic) are mapped to these at the edge with ``raise ... from exc``.
"""

from __future__ import annotations

from starlette.responses import JSONResponse


class HubError(Exception):
    """An error with an HTTP status, a stable machine code and a human message."""

    status: int = 500
    code: str = "internal_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def to_json(self) -> dict[str, dict[str, str]]:
        """The JSON body every error response carries."""
        return {"error": {"code": self.code, "message": self.message}}


class BadRequest(HubError):
    status = 400
    code = "bad_request"


class Unauthorized(HubError):
    status = 401
    code = "unauthorized"


class Forbidden(HubError):
    status = 403
    code = "forbidden"


class NotFound(HubError):
    status = 404
    code = "not_found"


class Conflict(HubError):
    status = 409
    code = "conflict"


class PayloadTooLarge(HubError):
    status = 413
    code = "payload_too_large"


class TooManyRequests(HubError):
    status = 429
    code = "rate_limited"
    retryable = True


class Unavailable(HubError):
    status = 503
    code = "unavailable"
    retryable = True


class InvalidEvent(BadRequest):
    """An event field that cannot be framed safely (CR, LF or NUL in id or event name)."""

    code = "invalid_event"


class InvalidChannel(BadRequest):
    """A channel name or pattern outside the documented charset or length."""

    code = "invalid_channel"


class BrokerUnavailable(Unavailable):
    """The backplane cannot accept or deliver events right now."""

    code = "broker_unavailable"


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The one JSON error shape: ``{"error": {"code": ..., "message": ...}}``."""
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)
