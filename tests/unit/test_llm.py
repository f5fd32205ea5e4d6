"""LLM providers: the demo provider, and the OpenAI-compatible one against a local server."""

from __future__ import annotations

import asyncio

import pytest

from fake_openai import ANSWER, MID_CHUNKS, fake_openai
from harness import free_port
from ssehub.llm import DemoProvider, ProviderError, create_provider
from ssehub.llm.demo import LABEL
from ssehub.llm.openai_compat import OpenAICompatProvider


async def collect(stream: object) -> list[str]:
    return [chunk async for chunk in stream]  # type: ignore[attr-defined]


async def test_demo_streams_a_labelled_canned_answer_word_by_word() -> None:
    provider = DemoProvider(pace_seconds=0)
    stream = provider.stream([{"role": "user", "content": "What is SSE?"}])
    chunks = await collect(stream)
    text = "".join(chunks)
    assert text.startswith(LABEL)
    assert "What is SSE?" in text
    assert len(chunks) > 20
    assert all(len(c.split()) == 1 for c in chunks)
    assert stream.usage is not None
    assert stream.usage.completion_tokens == len(chunks)


async def test_demo_pace_is_configurable_and_cancellable() -> None:
    provider = DemoProvider(pace_seconds=0.05)
    stream = provider.stream([{"role": "user", "content": "hi"}])
    started = asyncio.get_running_loop().time()
    first = [await anext(stream), await anext(stream), await anext(stream)]
    elapsed = asyncio.get_running_loop().time() - started
    assert 0.09 <= elapsed < 1.0
    await stream.aclose()
    assert first[0] == "[demo "
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


def test_create_provider_by_name() -> None:
    assert create_provider("demo").name == "demo"
    assert create_provider("openai", base_url="http://127.0.0.1:1/v1").name == "openai"
    with pytest.raises(ValueError, match="unknown llm provider"):
        create_provider("nope")


async def test_openai_compat_streams_chunks_and_usage() -> None:
    async with fake_openai() as fake:
        provider = OpenAICompatProvider(base_url=fake.base_url, api_key="k", model="ok")
        stream = provider.stream([{"role": "user", "content": "hi"}])
        assert await collect(stream) == ANSWER
        assert stream.usage is not None
        assert stream.usage.completion_tokens == len(ANSWER)
        assert fake.requests[0]["messages"] == [{"role": "user", "content": "hi"}]
        assert fake.requests[0]["stream"] is True
        await provider.aclose()


async def test_openai_compat_cancel_closes_the_upstream_request() -> None:
    async with fake_openai() as fake:
        provider = OpenAICompatProvider(base_url=fake.base_url, model="slow")
        stream = provider.stream([{"role": "user", "content": "hi"}])
        assert (await anext(stream)).startswith("s0")
        await stream.aclose()
        await fake.wait_for(lambda f: f.disconnects == 1)
        assert fake.finished == 0
        await provider.aclose()


async def test_openai_compat_error_mid_stream_keeps_the_chunks_before() -> None:
    async with fake_openai() as fake:
        provider = OpenAICompatProvider(base_url=fake.base_url, model="fail-mid")
        got: list[str] = []

        async def read() -> None:
            async for chunk in provider.stream([{"role": "user", "content": "hi"}]):
                got.append(chunk)

        with pytest.raises(ProviderError) as info:
            await read()
        assert got == MID_CHUNKS
        assert "model overloaded" in info.value.message
        assert info.value.code == "provider_error"
        await provider.aclose()


@pytest.mark.parametrize(
    ("model", "code", "words"),
    [
        ("unauthorized", "provider_unauthorized", "rejected the API key (401)"),
        ("rate-limited", "provider_rate_limited", "rate limiting"),
        ("stall", "provider_timeout", "timed out"),
    ],
)
async def test_openai_compat_maps_http_failures(model: str, code: str, words: str) -> None:
    async with fake_openai() as fake:
        provider = OpenAICompatProvider(
            base_url=fake.base_url, model=model, timeout=0.5, max_retries=0
        )
        with pytest.raises(ProviderError) as info:
            await collect(provider.stream([{"role": "user", "content": "hi"}]))
        assert info.value.code == code
        assert words in info.value.message
        await provider.aclose()


async def test_openai_compat_connection_refused() -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    provider = OpenAICompatProvider(base_url=base_url, model="ok", max_retries=0)
    with pytest.raises(ProviderError) as info:
        await collect(provider.stream([{"role": "user", "content": "hi"}]))
    assert info.value.code == "provider_unavailable"
    assert "cannot connect to the model provider at http://127.0.0.1:" in info.value.message
    await provider.aclose()


async def test_openai_compat_without_stream_usage() -> None:
    async with fake_openai() as fake:
        provider = OpenAICompatProvider(base_url=fake.base_url, model="ok", stream_usage=False)
        stream = provider.stream([{"role": "user", "content": "hi"}])
        assert await collect(stream) == ANSWER
        assert stream.usage is None
        assert "stream_options" not in fake.requests[0]
        await provider.aclose()
