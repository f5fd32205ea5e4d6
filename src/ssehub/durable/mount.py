"""Where Durable Streams are served: the protocol under the mount, the EventSource view."""

from __future__ import annotations

from fastapi import FastAPI

from .routes import HANDLERS, endpoint
from .service import DurableStreams
from .view import PREFIX, eventsource


def mount(app: FastAPI, ds: DurableStreams) -> None:
    """Serve the protocol under ``settings.ds_mount`` (nothing when it is empty)."""
    if not ds.settings.ds_mount:
        return
    app.state.durable = ds
    app.router.add_route(
        ds.settings.ds_mount.rstrip("/") + "/{path:path}",
        endpoint,
        methods=[*HANDLERS, "OPTIONS"],
        include_in_schema=False,
    )
    app.router.add_route(PREFIX + "/{path:path}", eventsource, methods=["GET"])
