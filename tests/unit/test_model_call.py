"""KubemindModel's own __call__ (the hot path's lean copy of kserve.Model.__call__): the same
steps in the same order, sync and async handlers alike, response headers, and KServe's per-stage
histograms still observed, so a KServe dashboard reading request_*_seconds keeps working."""

from __future__ import annotations

from typing import Any

import pytest
from kserve.metrics import POST_HIST_TIME, PRE_HIST_TIME, PREDICT_HIST_TIME
from prometheus_client import REGISTRY

from kubemind.model import KubemindModel


def observed(histogram: Any, model: str) -> float:
    name = histogram._name  # kserve's histograms are registered on the global registry
    return REGISTRY.get_sample_value(f"{name}_count", {"model_name": model}) or 0.0


class Traced(KubemindModel):
    def __init__(self, name: str, *, response_headers: bool = False):
        super().__init__(name)
        self.calls: list[str] = []
        self.required_response_headers = response_headers

    async def preprocess(self, payload: Any, headers: Any = None) -> Any:
        self.calls.append("preprocess")
        return {"value": payload["value"] + 1}

    def validate(self, payload: Any) -> Any:
        self.calls.append("validate")
        return payload

    def predict(self, payload: Any, headers: Any = None, response_headers: Any = None) -> Any:
        self.calls.append("predict")
        if response_headers is not None:
            response_headers["x-served-by"] = self.name
        return {"value": payload["value"] * 10}

    def postprocess(self, result: Any, headers: Any = None, response_headers: Any = None) -> Any:
        self.calls.append("postprocess")
        return {"answer": result["value"], "headers": dict(headers or {})}


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_the_call_runs_each_step_once_in_kserve_order(asynchronous: bool) -> None:
    model = Traced(f"traced-{asynchronous}")
    if asynchronous:  # an async predict is awaited, a sync one called
        async def predict(payload: Any, headers: Any = None) -> Any:
            model.calls.append("predict")
            return {"value": payload["value"] * 10}

        model.predict = predict  # type: ignore[method-assign]
    response, response_headers = await model({"value": 1}, headers={"x-request-id": "r1"})
    assert response == {"answer": 20, "headers": {"x-request-id": "r1"}}
    assert response_headers == {}
    assert model.calls == ["preprocess", "validate", "predict", "postprocess"]
    second, _ = await model({"value": 2}, headers={})
    assert second["answer"] == 30


async def test_response_headers_reach_the_caller_when_the_model_asks_for_them() -> None:
    model = Traced("traced-headers", response_headers=True)
    _, response_headers = await model({"value": 0}, headers={})
    assert response_headers == {"x-served-by": "traced-headers"}


async def test_kserve_stage_histograms_count_every_call() -> None:
    model = Traced("traced-metrics")
    before = [observed(h, model.name) for h in (PRE_HIST_TIME, PREDICT_HIST_TIME, POST_HIST_TIME)]
    for value in range(3):
        await model({"value": value}, headers={})
    after = [observed(h, model.name) for h in (PRE_HIST_TIME, PREDICT_HIST_TIME, POST_HIST_TIME)]
    assert [a - b for a, b in zip(after, before, strict=True)] == [3.0, 3.0, 3.0]
