"""``/docs`` (Swagger UI) and ``/redoc`` from files shipped with the hub, so they work offline.

The Swagger UI and ReDoc distributions come from the ``fastapi-offline`` package; nothing is
loaded from another host.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS_DIR = str(files("fastapi_offline") / "static")


def mount(app: FastAPI) -> None:
    """Serve the API reference pages and their assets (create the app with docs_url=None)."""
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "") + ASSETS_URL
        return get_swagger_ui_html(
            openapi_url=request.scope.get("root_path", "") + "/openapi.json",
            title=f"{app.title} · API reference",
            swagger_js_url=f"{root}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/swagger-ui.css",
            swagger_favicon_url=f"{root}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "") + ASSETS_URL
        return get_redoc_html(
            openapi_url=request.scope.get("root_path", "") + "/openapi.json",
            title=f"{app.title} · API reference",
            redoc_js_url=f"{root}/redoc.standalone.js",
            redoc_favicon_url=f"{root}/favicon.png",
            with_google_fonts=False,
        )
