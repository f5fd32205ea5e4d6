"""Refusals are counted where a HubError becomes a response; the errors module imports nothing."""

from __future__ import annotations

import ast
from pathlib import Path

from ssehub import errors
from ssehub.errors import Forbidden, NotFound, TooManyRequests, Unauthorized
from ssehub.metrics import Metrics
from ssehub.refusals import hub_error_response


def test_each_refusal_is_counted_once_by_status_and_code() -> None:
    metrics = Metrics()
    for exc in (
        Unauthorized("who"),
        Forbidden("no"),
        TooManyRequests("slow", code="x"),
        NotFound("?"),
    ):
        response = hub_error_response(metrics, exc)
        assert response.status_code == exc.status
    count = metrics.registry.get_sample_value
    assert count("ssehub_auth_failures_total", {"reason": "unauthorized"}) == 1
    assert count("ssehub_auth_failures_total", {"reason": "forbidden"}) == 1
    assert count("ssehub_rate_limit_rejections_total", {"code": "x"}) == 1


def test_the_errors_module_imports_no_other_ssehub_module() -> None:
    tree = ast.parse(Path(errors.__file__).read_text())
    imported = [
        node.module or "."
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        and (node.level or (node.module or "").startswith("ssehub"))
    ]
    assert imported == []  # a leaf: every module may raise its errors, type-only imports included
