"""Error answers with the refusals among them counted: where a HubError meets the metrics.

Every handler that turns a :class:`~ssehub.errors.HubError` into a response (the app's
exception handler, and streams that answer before their first byte) goes through here, so each
401, 403 and 429 is counted once.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

from .errors import HubError, error_response
from .metrics import Metrics


def hub_error_response(metrics: Metrics, exc: HubError) -> JSONResponse:
    """The response to ``exc``, counted in ``metrics`` (refusals by status and code)."""
    metrics.refused(exc.status, exc.code)
    return error_response(exc.status, exc.code, exc.message, exc.headers)
