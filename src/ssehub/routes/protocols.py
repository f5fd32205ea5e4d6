"""The AI front-end protocols spoken over ssehub's chat and runs: the Vercel AI SDK's UI message
stream (``useChat``) and AG-UI agents."""

from __future__ import annotations

from fastapi import FastAPI

from . import agui, agui_stages, aisdk


def mount(app: FastAPI) -> None:
    """Add the AI SDK chat endpoint and the AG-UI chat and stage agents."""
    for module in (aisdk, agui, agui_stages):
        app.include_router(module.router)
