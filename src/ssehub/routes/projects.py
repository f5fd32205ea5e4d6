"""Seed 002's project endpoints: stage streams, execute_stage, task status and cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from .. import messages
from ..auth import Principal, require_publish
from ..channels import validate_channel
from ..errors import BadRequest
from ..settings import Settings
from ..stream import EventStreamResponse
from ..tasks import TaskManager, get_stage
from .deps import get_principal, get_settings, get_stream_principal
from .streams import STREAM_RESPONSES, StreamOptions, stream_options

router = APIRouter(prefix="/api/v1", tags=["projects"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid project id, stage name or body."},
    401: {"description": "Missing or invalid credentials."},
    403: {"description": "No right to the project's stage channels."},
    404: {"description": "Unknown stage or task."},
}


class ExecuteStage(BaseModel):
    """Which stage to run, with its input."""

    stage_name: str = Field(min_length=1, max_length=100)
    input_data: dict[str, Any] = Field(default_factory=dict)


class StageStarted(BaseModel):
    """Seed 002's answer: subscribe to ``channel`` to watch the task."""

    task_id: str
    channel: str
    message: str


def get_tasks(request: Request) -> TaskManager:
    """The TaskManager of this app."""
    return request.app.state.tasks  # type: ignore[no-any-return]


async def stream_principal(options: StreamOptions, names: list[str]) -> Principal:
    """Anonymous read of the named project channels when configured, else the caller."""
    if options.settings.anonymous_project_streams:
        return Principal(subscribe=tuple(names), authenticated=False)
    return await get_stream_principal(options.request)


def _stage_names(settings: Settings, project_id: str, stage_name: str | None) -> list[str]:
    # A `*` would turn the exact names into a pattern over other projects or stages.
    for what, value in (("project id", project_id), ("stage name", stage_name or "")):
        if "*" in value:
            raise BadRequest(f"a {what} must not contain '*'")
    prefix = settings.stage_channel_prefix
    if stage_name is None:
        return [messages.project_pattern(project_id, prefix)]
    return [messages.stage_channel(project_id, stage_name, prefix)]


@router.get(
    "/sse/projects/{project_id}/stages/{stage_name}/",
    responses=STREAM_RESPONSES,
    response_model=None,
    tags=["streams"],
)
async def stage_stream(
    project_id: str, stage_name: str, options: StreamOptions = Depends(stream_options)
) -> EventStreamResponse:
    """One stage of a project (anonymous when `anonymous_project_streams`)."""
    names = _stage_names(options.settings, project_id, stage_name)
    return await options.open(names, await stream_principal(options, names))


@router.get(
    "/sse/projects/{project_id}/", responses=STREAM_RESPONSES, response_model=None, tags=["streams"]
)
async def project_stream(
    project_id: str, options: StreamOptions = Depends(stream_options)
) -> EventStreamResponse:
    """Every stage of a project (anonymous when `anonymous_project_streams`)."""
    names = _stage_names(options.settings, project_id, None)
    return await options.open(names, await stream_principal(options, names))


@router.get(
    "/sse/projects/{project_id}/stages/{stage_name}/stream/",
    responses=STREAM_RESPONSES,
    response_model=None,
    tags=["streams"],
)
async def stage_stream_authenticated(
    project_id: str,
    stage_name: str,
    options: StreamOptions = Depends(stream_options),
    principal: Principal = Depends(get_stream_principal),
) -> EventStreamResponse:
    """One stage of a project, for an authenticated caller with rights on its channel."""
    return await options.open(_stage_names(options.settings, project_id, stage_name), principal)


@router.get(
    "/sse/projects/{project_id}/stream/",
    responses=STREAM_RESPONSES,
    response_model=None,
    tags=["streams"],
)
async def project_stream_authenticated(
    project_id: str,
    options: StreamOptions = Depends(stream_options),
    principal: Principal = Depends(get_stream_principal),
) -> EventStreamResponse:
    """Every stage of a project, for an authenticated caller with rights on its channels."""
    return await options.open(_stage_names(options.settings, project_id, None), principal)


@router.post("/projects/{project_id}/execute_stage/", responses=ERRORS)
async def execute_stage(
    project_id: str,
    body: ExecuteStage,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
    tasks: TaskManager = Depends(get_tasks),
) -> StageStarted:
    """Run a registered stage; its messages stream on the returned channel."""
    spec = get_stage(body.stage_name)
    channel = validate_channel(
        messages.stage_channel(project_id, spec.name, settings.stage_channel_prefix)
    )
    require_publish(principal, channel)
    info = await tasks.submit(project_id, spec, body.input_data)
    return StageStarted(task_id=info.task_id, channel=info.channel, message="task started")


@router.get("/tasks/{task_id}", responses=ERRORS)
async def task_status(
    task_id: str,
    principal: Principal = Depends(get_principal),
    tasks: TaskManager = Depends(get_tasks),
) -> dict[str, Any]:
    """State of an executed stage: pending, running, done, error or cancelled."""
    require_publish(principal, tasks.get(task_id).channel)
    return await tasks.status(task_id)


@router.post("/tasks/{task_id}/cancel", responses=ERRORS)
async def cancel_task(
    task_id: str,
    principal: Principal = Depends(get_principal),
    tasks: TaskManager = Depends(get_tasks),
) -> dict[str, Any]:
    """Stop a task: its run ends with `error: cancelled` and the runner stops the stage."""
    require_publish(principal, tasks.get(task_id).channel)
    return await tasks.cancel(task_id)
