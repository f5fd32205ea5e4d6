"""Example stages for the project stage pipeline: storyboard and image generation.

Load them from the repository root with ``SSEHUB_STAGE_MODULES=examples.stages ssehub serve``
(or the JSON list ``SSEHUB_STAGE_MODULES='["examples.stages"]'``; from elsewhere, put the
repository root on PYTHONPATH); they then run in-process or on ``ssehub worker`` like the
built-in stages:

    curl -X POST localhost:8000/api/v1/projects/123/execute_stage/ \\
      -H 'Content-Type: application/json' \\
      -d '{"stage_name": "storyboard", "input_data": {"script": "A knight. A dragon. A feast."}}'
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ssehub.tasks import stage


def scenes(script: str) -> list[str]:
    """One scene per sentence of the script."""
    return [s.strip() for s in script.replace("。", ".").split(".") if s.strip()]


@stage("storyboard", queue="llm")
async def storyboard(pub: Any, input_data: dict[str, Any]) -> dict[str, Any]:
    """Write one shot description per scene, streaming the text and reporting each shot."""
    shots = scenes(str(input_data.get("script") or "A quiet town. A storm. Morning."))
    pace = float(input_data.get("pace", 0.02))
    for index, scene in enumerate(shots, 1):
        await pub.publish_token(f"分镜{index}: wide shot — {scene}.\n")
        await pub.publish_progress(index, len(shots), f"分镜{index}")
        await asyncio.sleep(pace)
    return {"shots": len(shots)}


@stage("image_generation", queue="image")
def image_generation(pub: Any, input_data: dict[str, Any]) -> dict[str, Any]:
    """A blocking stage (a sync image API): one fake image per shot, with per-item progress."""
    count = int(input_data.get("shots", 4))
    pace = float(input_data.get("pace", 0.02))
    urls = []
    for index in range(1, count + 1):
        time.sleep(pace)  # the image model call
        urls.append(f"https://images.example/{index}.png")
        pub.publish_progress(index, count, f"分镜{index}")
    pub.publish_stage_update("completed", 100, f"{count} images generated")
    pub.publish_done(full_text="\n".join(urls), metadata={"images": count})
    return {"images": count}
