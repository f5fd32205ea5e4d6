"""Stage runs as AG-UI agents: the stage is a step, its progress the state, its tokens a message.

``POST /api/v1/ag-ui/stages/{project}/{stage}`` starts the stage with ``forwardedProps`` as its
input and streams the run: ``RUN_STARTED``, ``STEP_STARTED``, ``STATE_SNAPSHOT``, then
``STATE_DELTA`` per ``stage_update``/``progress``, the tokens as one text message, and
``STEP_FINISHED`` with ``RUN_FINISHED`` (or ``RUN_ERROR``). ``.../join`` joins the stage's run
late from the hub's run snapshot; both continue exactly after ``Last-Event-ID``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ag_ui.core import (
    RunAgentInput,
    RunErrorEvent,
    RunFinishedCancelledOutcome,
    RunFinishedEvent,
    RunStartedEvent,
    StateDeltaEvent,
    StateSnapshotEvent,
    StepFinishedEvent,
    StepStartedEvent,
    TextMessageContentEvent,
    TextMessageEndEvent,
    TextMessageStartEvent,
)
from fastapi import APIRouter, Depends, Request, Response

from .. import messages
from ..answers import event_data
from ..auth import Principal, require_publish
from ..channels import validate_channel
from ..errors import Conflict
from ..hub import Hub
from ..relay import RelayResponse, Translation, fixed_response
from ..runs import RunState
from ..sdk.parser import ServerSentEvent
from ..settings import Settings
from ..stream import EventStreamResponse
from ..tasks import TaskManager, get_stage
from .agui import RESPONSES, before, frame
from .deps import get_hub, get_principal, get_settings
from .projects import get_tasks
from .streams import open_stream, resume_id

router = APIRouter(prefix="/api/v1/ag-ui/stages", tags=["ag-ui"])

STATE_KEYS = ("status", "progress", "message", "current", "total", "item_name")
PROGRESS_KEYS = ("current", "total", "progress", "item_name")


def run_state(snapshot: dict[str, Any]) -> dict[str, Any]:
    """The agent state of a run: its stage, status and progress fields."""
    state = {key: snapshot.get(key) for key in STATE_KEYS}
    state["status"] = snapshot.get("stage_status") or snapshot.get("status")
    state["stage"] = snapshot.get("stage")
    return state


class StageRun(Translation):
    """One stage run's hub events as an AG-UI run; ``known`` is the run as a reconnecting client
    last saw it (its state and whether its text message is open)."""

    def __init__(
        self,
        body: RunAgentInput,
        stage: str,
        run_id: str,
        known: RunState | None = None,
        *,
        task_id: str | None = None,
    ) -> None:
        self.body = body
        self.task_id = task_id  # on RUN_STARTED's metadata: cancel at /api/v1/tasks/{id}/cancel
        self.stage = stage
        self.message_id = f"{run_id}-text"
        self.known = known
        self.started = False
        self.text_open = False

    def feed(self, event: ServerSentEvent) -> list[bytes]:
        if self.done:
            return []
        data = event_data(event.data)
        if event.event == "snapshot":
            return self._snapshot(data, data.get("last_event_id") or event.id)
        if event.event not in messages.STAGE_TYPES:
            return []
        out = [] if self.started else self.open_run(event.id)
        kind = event.event
        if kind == "token":
            out += self._text(str(data.get("content") or ""), event.id)
        elif kind == "stage_update":
            changes = {"status": data.get("status"), "progress": data.get("progress")}
            out.append(self._delta({**changes, "message": data.get("message")}, event.id))
        elif kind == "progress":
            out.append(self._delta({k: data.get(k) for k in PROGRESS_KEYS}, event.id))
        else:
            out += self.end_run(kind, data, event.id)
        return out

    def open_run(self, event_id: str, state: dict[str, Any] | None = None) -> list[bytes]:
        """Run start, the step, the state; for a reconnect also its re-opened text message."""
        self.started = True
        known = self.known
        if state is None:
            state = run_state(known.snapshot()) if known else {"stage": self.stage}
        ids = {"thread_id": self.body.thread_id, "run_id": self.body.run_id}
        metadata = {"task_id": self.task_id} if self.task_id else None
        out = [
            frame(RunStartedEvent(**ids, metadata=metadata), event_id),
            frame(StepStartedEvent(step_name=self.stage), event_id),
            frame(StateSnapshotEvent(snapshot=state), event_id),
        ]
        if known is not None and known.full_text:
            out += self._text("", event_id)
        return out

    def _snapshot(self, data: dict[str, Any], event_id: str) -> list[bytes]:
        """A late joiner's prelude from the hub's run snapshot (the run so far in one event)."""
        if self.started:
            return []
        out = self.open_run(event_id, run_state(data))
        out += self._text(str(data.get("full_text") or ""), event_id)
        status = data.get("status")
        if status == "done":
            out += self.end_run("done", {}, event_id)
        elif status in ("error", "cancelled"):
            out += self.end_run("error", {"error": data.get("error")}, event_id)
        return out

    def _text(self, text: str, event_id: str) -> list[bytes]:
        out = []
        if not self.text_open:
            self.text_open = True
            start = TextMessageStartEvent(message_id=self.message_id, role="assistant")
            out.append(frame(start, event_id))
        if text:
            content = TextMessageContentEvent(message_id=self.message_id, delta=text)
            out.append(frame(content, event_id))
        return out

    def _delta(self, changes: dict[str, Any], event_id: str) -> bytes:
        patch = [{"op": "add", "path": f"/{key}", "value": value} for key, value in changes.items()]
        return frame(StateDeltaEvent(delta=patch), event_id)

    def end_run(self, kind: str, data: dict[str, Any], event_id: str) -> list[bytes]:
        self.done = True
        out = []
        if self.text_open:
            out.append(frame(TextMessageEndEvent(message_id=self.message_id), event_id))
        out.append(frame(StepFinishedEvent(step_name=self.stage), event_id))
        ids = {"thread_id": self.body.thread_id, "run_id": self.body.run_id}
        if kind == "done":
            out.append(frame(RunFinishedEvent(**ids), event_id))
        elif data.get("error") == "cancelled":
            out.append(
                frame(RunFinishedEvent(**ids, outcome=RunFinishedCancelledOutcome()), event_id)
            )
        else:
            out.append(frame(RunErrorEvent(message=str(data.get("error") or "failed")), event_id))
        return out


def stage_input(body: RunAgentInput) -> dict[str, Any]:
    """The stage's input: ``forwardedProps`` when it is an object."""
    props = body.forwarded_props
    return props if isinstance(props, dict) else {}


async def stage_stream(
    request: Request,
    hub: Hub,
    settings: Settings,
    principal: Principal,
    channel: str,
    last_event_id: str | None,
) -> EventStreamResponse:
    """A hub stream of the stage channel (read by anyone when project streams are anonymous)."""
    if settings.anonymous_project_streams:
        principal = Principal(subscribe=(channel,))
    return await open_stream(
        request,
        hub=hub,
        settings=settings,
        principal=principal,
        names=[channel],
        types=messages.STAGE_TYPES | {"snapshot"},
        last_event_id=last_event_id,
    )


@router.post("/{project_id}/{stage_name}", responses=RESPONSES, response_model=None)
async def run_stage(
    project_id: str,
    stage_name: str,
    body: RunAgentInput,
    request: Request,
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
    tasks: TaskManager = Depends(get_tasks),
) -> Response:
    """Start the stage (input: ``forwardedProps``) and stream its run as AG-UI events."""
    if resume_id(request, None) is not None:
        return await join_stage(project_id, stage_name, body, request, hub, settings, principal)
    spec = get_stage(stage_name)
    channel = validate_channel(
        messages.stage_channel(project_id, spec.name, settings.stage_channel_prefix)
    )
    require_publish(principal, channel)
    # Listening from the head before the run opens: its first event is not missed.
    head = await hub.head()
    stream = await stage_stream(request, hub, settings, principal, channel, head)
    try:
        info = await tasks.submit(project_id, spec, stage_input(body))
    except BaseException:
        stream.conn.close("run_not_started")
        await stream.closer()
        raise
    run_id = info.run_id or body.run_id
    translation = StageRun(body, spec.name, run_id, task_id=info.task_id)
    return RelayResponse(stream.conn, translation, closer=stream.closer)


@router.post("/{project_id}/{stage_name}/join", responses=RESPONSES, response_model=None)
async def join_stage(
    project_id: str,
    stage_name: str,
    body: RunAgentInput,
    request: Request,
    hub: Hub = Depends(get_hub),
    settings: Settings = Depends(get_settings),
    principal: Principal = Depends(get_principal),
) -> Response:
    """Join the stage's run: from its snapshot, or exactly after Last-Event-ID."""
    channel = validate_channel(
        messages.stage_channel(project_id, stage_name, settings.stage_channel_prefix)
    )
    run = await hub.runs.get(channel) if hub.runs else None
    if run is None:
        raise Conflict("this stage has no run to join: start one")
    last_id = resume_id(request, None)
    known = dataclasses.replace(run) if run is not None and last_id is not None else None
    translation = StageRun(body, stage_name, run.run_id, known)
    if known is not None and known.finished and last_id and not before(last_id, known.last_id):
        ending = "done" if known.status == "done" else "error"
        error = "cancelled" if known.status == "cancelled" else known.error
        frames = translation.open_run(last_id) + translation.end_run(
            ending, {"error": error}, last_id
        )
        return fixed_response(frames, {})
    stream = await stage_stream(request, hub, settings, principal, channel, last_id)
    # A reconnect is re-opened at once; a late joiner's prelude comes from the run snapshot.
    prelude = translation.open_run(last_id) if known is not None and last_id else []
    return RelayResponse(stream.conn, translation, closer=stream.closer, prelude=prelude)
