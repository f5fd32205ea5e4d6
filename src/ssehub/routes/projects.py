"""Project endpoints: stage streams, execute_stage, task status and cancel."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from .. import messages
from ..auth import Principal, require_publish
from ..channels import Selector, validate_channel
from ..errors import BadRequest, Unavailable
from ..gate import Gate, client_ip
from ..hub import Hub
from ..run_connection import RunConnection
from ..runs import new_run_id
from ..settings import Settings
from ..stream import EventStreamResponse
from ..tasks import TaskManager, get_stage
from .deps import get_gate, get_hub, get_principal, get_settings, get_stream_principal
from .streams import STREAM_RESPONSES, StreamOptions, stream_options

router = APIRouter(prefix="/api/v1", tags=["projects"])

ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"description": "Invalid project id, stage name or body."},
    401: {"description": "Missing or invalid credentials."},
    403: {"description": "No right to the project's stage channels."},
    404: {"description": "Unknown stage or task."},
    429: {"description": "Stage runs started too fast by this user or address (Retry-After)."},
}


class ExecuteStage(BaseModel):
    """Which stage to run, with its input."""

    stage_name: str = Field(min_length=1, max_length=100)
    input_data: dict[str, Any] = Field(default_factory=dict)


class StageStarted(BaseModel):
    """The answer: subscribe to ``channel`` to watch the task."""

    task_id: str
    channel: str
    message: str
    run_id: str = Field(description="The run this task publishes; every message carries it.")
    resume_after: str = Field(
        description="Send it as Last-Event-ID (or `lastEventId`) to receive the whole run."
    )


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
    request: Request,
    project_id: str,
    body: ExecuteStage,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
    tasks: TaskManager = Depends(get_tasks),
    gate: Gate = Depends(get_gate),
) -> StageStarted:
    """Run a registered stage; its messages stream on the returned channel."""
    spec = get_stage(body.stage_name)
    channel = validate_channel(
        messages.stage_channel(project_id, spec.name, settings.stage_channel_prefix)
    )
    require_publish(principal, channel)
    await gate.check_rate("stage", principal, client_ip(request))
    info = await tasks.submit(project_id, spec, body.input_data)
    return started(info)


def started(info: Any) -> StageStarted:
    """The answer describing a submitted task."""
    return StageStarted(
        task_id=info.task_id,
        channel=info.channel,
        message="task started",
        run_id=info.run_id or "",
        resume_after=info.resume_after,
    )


@router.post(
    "/projects/{project_id}/execute_stage/stream/",
    responses={**ERRORS, **STREAM_RESPONSES},
    response_model=None,
)
async def execute_stage_stream(
    request: Request,
    project_id: str,
    body: ExecuteStage,
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
    tasks: TaskManager = Depends(get_tasks),
    hub: Hub = Depends(get_hub),
    gate: Gate = Depends(get_gate),
) -> EventStreamResponse:
    """Run a registered stage and receive its events on the POST response (for fetch).

    The events and ids are those of the stage channel (resume there with Last-Event-ID); the
    response ends with the run's `done` or `error`. Closing it does not stop the run (use
    `/tasks/{task_id}/cancel`). The task is described in the `X-Task-Id`, `X-Run-Id`,
    `X-Channel` and `X-Resume-After` headers. It counts as a stream against the connection
    limits.
    """
    if hub.closing:
        raise Unavailable("the hub is shutting down", headers={"Retry-After": "1"})
    spec = get_stage(body.stage_name)
    channel = validate_channel(
        messages.stage_channel(project_id, spec.name, settings.stage_channel_prefix)
    )
    require_publish(principal, channel)
    run_id = new_run_id()
    ip = client_ip(request)
    conn = RunConnection(
        run_id=run_id,
        client_id=str(uuid.uuid4()),
        selector=Selector.of([channel]),
        max_buffer=settings.subscriber_buffer,
        user_id=principal.user_id,
        info={"ip": ip, "user_agent": request.headers.get("user-agent", "")},
    )
    await gate.check_rates(principal, ip, ("stage", "stream"), 1, 1)
    await gate.admit(conn, principal)

    async def closer() -> None:
        await hub.detach(conn)
        await gate.release(conn)

    try:
        await hub.open(conn, None)  # subscribed before the run starts: nothing is missed
        conn.keep_opening_frame_only()
        info = await tasks.submit(project_id, spec, body.input_data, run_id=run_id)
    except BaseException:
        await closer()
        raise

    answer = started(info)
    headers = {
        "x-task-id": answer.task_id,
        "x-run-id": answer.run_id,
        "x-channel": answer.channel,
        "x-resume-after": answer.resume_after,
    }
    return EventStreamResponse(conn, closer=closer, headers=headers)


@router.get("/tasks/{task_id}", responses=ERRORS)
async def task_status(
    task_id: str,
    principal: Principal = Depends(get_principal),
    tasks: TaskManager = Depends(get_tasks),
) -> dict[str, Any]:
    """State of an executed stage: pending, running, done, error or cancelled."""
    require_publish(principal, (await tasks.get(task_id)).channel)
    return await tasks.status(task_id)


@router.post("/tasks/{task_id}/cancel", responses=ERRORS)
async def cancel_task(
    task_id: str,
    principal: Principal = Depends(get_principal),
    tasks: TaskManager = Depends(get_tasks),
) -> dict[str, Any]:
    """Stop a task: its run ends with `error: cancelled` and the runner stops the stage."""
    require_publish(principal, (await tasks.get(task_id)).channel)
    return await tasks.cancel(task_id)
