"""A stage that fails its first attempts, loaded by the tests' hubs and Celery workers."""

from __future__ import annotations

import json
from typing import Any

from ssehub.tasks import stage


@stage("flaky", queue="llm", max_retries=2)
async def flaky(pub: Any, input_data: dict[str, Any]) -> dict[str, Any]:
    """Fails attempts below ``fail_times``; later attempts answer ``ok``."""
    await pub.publish_token(f"attempt {pub.retry_count} ")
    if pub.retry_count < int(input_data.get("fail_times", 1)):
        raise RuntimeError(f"attempt {pub.retry_count} failed")
    await pub.publish_token("ok")
    return {"attempts": pub.retry_count + 1}


def assert_retried(reader: Any) -> None:
    """stage_update/token/error per failed attempt, then the successful attempt's done."""
    errors = [json.loads(e.data) for e in reader.of_type("error")]
    assert [(e["error"], e["retry_count"]) for e in errors] == [
        ("RuntimeError: attempt 0 failed", 0),
        ("RuntimeError: attempt 1 failed", 1),
    ]
    done = json.loads(reader.of_type("done")[0].data)
    assert done["metadata"] == {"attempts": 3}
    assert done["full_text"] == "attempt 2 ok"
    kinds = [e.event for e in reader.events if e.event in ("error", "done")]
    assert kinds == ["error", "error", "done"]
