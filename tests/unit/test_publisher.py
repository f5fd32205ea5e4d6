"""Publisher SDK: seed 002's message shapes field by field, and token coalescing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest

from ssehub import messages
from ssehub.publisher import Publisher, openai_delta
from ssehub.runs import RunClosed

# Seed 002, "消息格式": the key order of each example message.
SEED_KEYS = {
    "token": ["type", "content", "full_text", "stage", "project_id", "timestamp"],
    "stage_update": [
        "type", "stage", "status", "progress", "message", "project_id", "timestamp",
    ],
    "progress": [
        "type", "stage", "current", "total", "progress", "item_name", "project_id", "timestamp",
    ],
    "done": ["type", "stage", "project_id", "full_text", "metadata", "timestamp"],
    "error": ["type", "stage", "project_id", "error", "retry_count", "timestamp"],
}  # fmt: skip


class Recorder:
    """A transport that keeps what it is given (sync and async)."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.sent: list[tuple[str, str, dict[str, Any]]] = []
        self.fail_on = fail_on
        self.closed = False

    def send(self, channel: str, event: str, data: Any) -> None:
        if event == self.fail_on:
            raise RunClosed("ended")
        self.sent.append((channel, event, orjson.loads(orjson.dumps(data))))

    async def asend(self, channel: str, event: str, data: Any) -> None:
        self.send(channel, event, data)

    def close(self) -> None:
        self.closed = True

    async def aclose(self) -> None:
        self.closed = True

    @property
    def data(self) -> list[dict[str, Any]]:
        return [d for _, _, d in self.sent]


def make(rec: Recorder, **kw: Any) -> Publisher:
    return Publisher(123, "rewrite", transport=rec, **kw)


def test_channel_name_follows_seed() -> None:
    assert make(Recorder()).channel == "ai_story:project:123:stage:rewrite"
    assert Publisher(1, "s", transport=Recorder(), prefix="x").channel == "x:project:1:stage:s"
    assert messages.project_pattern(123) == "ai_story:project:123:stage:*"
    assert messages.parse_stage_channel("ai_story:project:123:stage:rewrite") == (
        "ai_story",
        "123",
        "rewrite",
    )
    assert messages.parse_stage_channel("chat:42") is None


def test_shapes_match_seed_002_field_by_field() -> None:
    rec = Recorder()
    before = time.time()
    with make(rec, coalesce_tokens=1) as pub:
        pub.publish_token("这是", full_text="这是一段流式生成的文本这是")
        pub.publish_stage_update("processing", 50, "正在生成文案...")
        pub.publish_progress(3, 10, "分镜3")
        pub.publish_error("API调用失败: 超时", retry_count=1)
    with make(Recorder()) as other:
        other.transport.sent = rec.sent  # type: ignore[attr-defined]
        other.publish_done("完整的生成结果...", {"tokens_used": 1000, "latency_ms": 2500})
    token, update, progress, error, done = rec.data
    for msg in rec.data:
        # The seed's keys in the seed's order, then the run id every stage message carries.
        extra = ["token_count"] if msg["type"] == "token" else []
        assert list(msg) == [*SEED_KEYS[msg["type"]], *extra, "run_id"]
        assert msg["run_id"] == (pub.run_id if msg["type"] != "done" else other.run_id)
        assert before <= msg["timestamp"] <= time.time()
        assert isinstance(msg["timestamp"], float)
    assert [event for _, event, _ in rec.sent] == [m["type"] for m in rec.data]
    assert {ch for ch, _, _ in rec.sent} == {"ai_story:project:123:stage:rewrite"}
    assert token == {
        "type": "token",
        "content": "这是",
        "full_text": "这是一段流式生成的文本这是",
        "stage": "rewrite",
        "project_id": "123",
        "timestamp": token["timestamp"],
        "token_count": 1,
        "run_id": token["run_id"],
    }
    assert update == {
        "type": "stage_update",
        "stage": "rewrite",
        "status": "processing",
        "progress": 50,
        "message": "正在生成文案...",
        "project_id": "123",
        "timestamp": update["timestamp"],
        "run_id": update["run_id"],
    }
    assert progress == {
        "type": "progress",
        "stage": "rewrite",
        "current": 3,
        "total": 10,
        "progress": 30,
        "item_name": "分镜3",
        "project_id": "123",
        "timestamp": progress["timestamp"],
        "run_id": progress["run_id"],
    }
    assert done == {
        "type": "done",
        "stage": "rewrite",
        "project_id": "123",
        "full_text": "完整的生成结果...",
        "metadata": {"tokens_used": 1000, "latency_ms": 2500},
        "timestamp": done["timestamp"],
        "run_id": done["run_id"],
    }
    assert error == {
        "type": "error",
        "stage": "rewrite",
        "project_id": "123",
        "error": "API调用失败: 超时",
        "retry_count": 1,
        "timestamp": error["timestamp"],
        "run_id": error["run_id"],
    }


def test_full_text_is_optional_and_can_be_tracked() -> None:
    rec = Recorder()
    with make(rec, coalesce_tokens=1) as pub:
        pub.publish_token("a")
    assert "full_text" not in rec.data[0]
    rec = Recorder()
    with make(rec, coalesce_tokens=1, token_full_text=True) as pub:
        pub.publish_token("a")
        pub.publish_token("b")
        pub.publish_done()
    assert [m.get("full_text") for m in rec.data] == ["a", "ab", "ab"]


def test_coalescing_keeps_order_loses_nothing_and_flushes_on_exit() -> None:
    rec = Recorder()
    pieces = [f"t{i} " for i in range(50)]
    with make(rec, coalesce_tokens=16, coalesce_seconds=60) as pub:
        for piece in pieces[:20]:
            pub.publish_token(piece)
        pub.publish_progress(1, 2, "x")  # flushes the 4 buffered tokens first
        for piece in pieces[20:]:
            pub.publish_token(piece)
    kinds = [m["type"] for m in rec.data]
    assert kinds == ["token", "token", "progress", "token", "token"]
    assert [len(m["content"].split()) for m in rec.data if m["type"] == "token"] == [16, 4, 16, 14]
    text = "".join(m["content"] for m in rec.data if m["type"] == "token")
    assert text == "".join(pieces)
    assert not rec.closed  # a transport passed in stays the caller's to close


def test_exception_flushes_tokens_then_publishes_error() -> None:
    rec = Recorder()

    def fail() -> None:
        with make(rec, retry_count=2) as pub:
            pub.publish_token("partial ")
            pub.publish_token("answer")
            raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        fail()
    assert [m["type"] for m in rec.data] == ["token", "error"]
    assert rec.data[0]["content"] == "partial answer"
    assert rec.data[1]["error"] == "ValueError: boom"
    assert rec.data[1]["retry_count"] == 2


def test_run_closed_stops_the_publisher_without_an_error_message() -> None:
    rec = Recorder(fail_on="token")
    pub = make(rec, coalesce_tokens=1)
    with pytest.raises(RunClosed):
        pub.publish_token("x")
    pub.__exit__(RunClosed, RunClosed("ended"), None)
    assert rec.data == []


async def test_async_face_coalesces_and_flushes_after_the_window() -> None:
    rec = Recorder()
    async with make(rec, coalesce_tokens=100, coalesce_seconds=0.05) as pub:
        await pub.publish_token("a")
        await pub.publish_token("b")
        assert rec.data == []
        async with asyncio.timeout(5):
            while not rec.data:
                await asyncio.sleep(0.01)
        assert rec.data[0]["content"] == "ab"
        await pub.publish_token("c")
        await pub.publish_done(metadata={"k": 1})
    assert [(m["type"], m.get("content")) for m in rec.data] == [
        ("token", "ab"),
        ("token", "c"),
        ("done", None),
    ]
    assert rec.data[-1]["full_text"] == "abc"


async def test_a_run_closed_during_a_window_flush_stops_the_next_publish() -> None:
    rec = Recorder(fail_on="token")  # the run was cancelled: every publish now gets 409

    async def stage() -> None:
        async with make(rec, coalesce_tokens=100, coalesce_seconds=0.01) as pub:
            await pub.publish_token("a")
            async with asyncio.timeout(5):
                while pub._flusher is None or not pub._flusher.done():
                    await asyncio.sleep(0.01)
            await pub.publish_token("b")  # the background flush failed: this call learns it

    with pytest.raises(RunClosed):
        await stage()
    assert rec.data == []


async def test_async_exception_publishes_error() -> None:
    rec = Recorder()

    async def fail() -> None:
        async with make(rec) as pub:
            await pub.publish_token("x")
            raise RuntimeError("llm down")

    with pytest.raises(RuntimeError):
        await fail()
    assert [m["type"] for m in rec.data] == ["token", "error"]
    assert rec.data[1]["error"] == "RuntimeError: llm down"


def chunk(content: str | None, finish: str | None = None) -> dict[str, Any]:
    return {
        "model": "m1",
        "choices": [{"delta": {"content": content}, "finish_reason": finish}],
    }


def test_stream_openai_sync() -> None:
    rec = Recorder()
    response = [chunk("Hel"), chunk("lo"), chunk(None, "stop")]
    with make(rec, coalesce_tokens=1) as pub:
        assert pub.stream_openai(response) == "Hello"
    assert [m["type"] for m in rec.data] == ["token", "token", "done"]
    assert rec.data[-1]["full_text"] == "Hello"
    assert rec.data[-1]["metadata"] == {"model": "m1", "finish_reason": "stop"}


async def test_stream_openai_async_error_mid_stream() -> None:
    async def response() -> Any:
        yield chunk("Hi")
        raise ConnectionError("reset by peer")

    rec = Recorder()

    async def stream() -> None:
        async with make(rec) as pub:
            await pub.stream_openai(response())

    with pytest.raises(ConnectionError):
        await stream()
    assert [m["type"] for m in rec.data] == ["token", "error"]
    assert "reset by peer" in rec.data[-1]["error"]
    assert openai_delta({"choices": []}, {}) == ""


def sse_bytes(rec: Recorder) -> int:
    """Wire bytes of the recorded messages as SSE frames (id/event lines included)."""
    return sum(
        len(f"id: abcdef-{i}\nevent: {event}\ndata: ".encode()) + len(orjson.dumps(d)) + 2
        for i, (_, event, d) in enumerate(rec.sent)
    )


def test_coalescing_saving_on_a_2000_token_answer() -> None:
    tokens = [f" word{i % 97}" for i in range(2000)]
    runs = {}
    for name, kw in {
        "seed (1 msg/token, full_text)": {"coalesce_tokens": 1, "token_full_text": True},
        "1 msg/token, no full_text": {"coalesce_tokens": 1},
        "coalesced (16 tokens)": {"coalesce_tokens": 16, "coalesce_seconds": 60},
    }.items():
        rec = Recorder()
        with make(rec, **kw) as pub:
            for piece in tokens:
                pub.publish_token(piece)
            pub.publish_done()
        runs[name] = (len(rec.sent), sse_bytes(rec))
        assert rec.data[-1]["full_text"] == "".join(tokens)
    for name, (count, size) in runs.items():
        print(f"{name}: {count} messages, {size} bytes")
    seed, plain, coalesced = runs.values()
    assert coalesced[0] == 2000 // 16 + 1
    assert coalesced[1] < plain[1] / 3 < seed[1] / 100


def test_stream_openai_with_sdk_chunk_objects() -> None:
    from openai.types.chat import ChatCompletionChunk

    def sdk_chunk(content: str | None, finish: str | None = None, usage: Any = None) -> Any:
        return ChatCompletionChunk.model_validate(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": "gpt-x",
                "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}],
                "usage": usage,
            }
        )

    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    rec = Recorder()
    with make(rec, coalesce_tokens=1) as pub:
        pub.stream_openai(
            [sdk_chunk("Hi"), sdk_chunk(" there", "stop"), sdk_chunk(None, usage=usage)]
        )
    done = rec.data[-1]
    assert done["full_text"] == "Hi there"
    assert done["metadata"]["model"] == "gpt-x"
    assert done["metadata"]["finish_reason"] == "stop"
    assert done["metadata"]["usage"]["total_tokens"] == 5
