"""Grafana dashboards as code, one per kind of service, built with grafana-foundation-sdk.

Grafana's own typed builders (generated from its schemas by cog) rather than grafanalib or
hand-written JSON: the panel and query fields are Grafana's, so a schema change shows up as a
type error here, not as a dashboard that silently drops a setting on import. The JSON is
committed (observability/dashboards/) for Grafana's file provisioning or a dashboard sidecar.

Every query selects with the target labels the PodMonitors set (inferenceservice, component,
revision) and the metric names the code exports; the few names other work still has to add are
listed in NOT_YET_EXPORTED so reviewers (and a test) can tell them apart.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common, dashboard, prometheus, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import (
    LegendDisplayMode,
    LegendPlacement,
    SortOrder,
    TooltipDisplayMode,
)
from grafana_foundation_sdk.models.dashboard import (
    Dashboard,
    DataSourceRef,
    GridPos,
    VariableRefresh,
)

DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
SERVICE = 'inferenceservice=~"$inferenceservice"'
INFER = 'endpoint=~"infer|ModelInfer|ModelStreamInfer|generate|generate_stream|openai_.*|v1_predict|jobs_submit"'
NOT_YET_EXPORTED = frozenset({
    "kubemind_batch_size",  # per-request batch size of the online predictors (RequestRecord.batch)
    "kubemind_rollout_canary_weight_percent",  # the rollout controller's canary traffic share
    "kubemind_rollout_gate_value",  # each PromQL gate's last value {gate}
    "kubemind_rollout_gate_threshold",  # ... and the threshold it is held to {gate}
})


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str


@dataclass(frozen=True)
class Panel:
    title: str
    unit: str
    queries: Sequence[Query]
    description: str = ""


def _quantiles(metric: str, selector: str, by: str = "", qs: Sequence[float] = (0.5, 0.95, 0.99)) -> list[Query]:
    group = f"le{', ' + by if by else ''}"
    label = f"{{{{{by}}}}} " if by else ""
    return [
        Query(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[$__rate_interval])))", f"{label}p{int(q * 100)}")
        for q in qs
    ]


def _slo_panels() -> list[Panel]:
    match = 'slo_service=~"$inferenceservice"'
    return [
        Panel("SLO burn rate (5m)", "x", [Query(f"slo:current_burn_rate:ratio{{{match}}}", "{{slo_service}} {{slo}}")],
              "1 = spending the error budget exactly over the SLO period; the page fires at 14.4 over 1h and 5m."),
        Panel("Error budget left (period)", "percentunit",
              [Query(f"slo:period_error_budget_remaining:ratio{{{match}}}", "{{slo_service}} {{slo}}")]),
    ]


def _traffic_panels(selector: str) -> list[Panel]:
    return [
        Panel("Requests by status", "reqps",
              [Query(f"sum by (code) (rate(kubemind_requests_total{{{selector},{INFER}}}[$__rate_interval]))", "{{code}}")]),
        Panel("Request latency", "s", _quantiles("kubemind_request_duration_seconds", f"{selector},{INFER}")),
    ]


def _llm() -> list[Panel]:
    sel = SERVICE
    return [
        *_slo_panels(),
        Panel("Time to first token", "s", _quantiles("vllm:time_to_first_token_seconds", sel),
              "Queue time included: a rising TTFT with flat inter-token latency means requests wait, not decode slowly."),
        Panel("Inter-token latency", "s", _quantiles("vllm:inter_token_latency_seconds", sel)),
        Panel("Tokens per second", "short", [
            Query(f"sum(rate(vllm:generation_tokens_total{{{sel}}}[$__rate_interval]))", "generated"),
            Query(f"sum(rate(vllm:prompt_tokens_total{{{sel}}}[$__rate_interval]))", "prompt"),
        ]),
        Panel("Engine queue", "short", [
            Query(f"sum(vllm:num_requests_waiting{{{sel}}})", "waiting"),
            Query(f"sum(vllm:num_requests_running{{{sel}}})", "running"),
        ], "Waiting requests are the LLM autoscaling signal (components/autoscaling-keda)."),
        Panel("Engine queue time", "s", _quantiles("vllm:request_queue_time_seconds", sel, qs=(0.5, 0.95))),
        Panel("KV-cache use", "percentunit", [
            Query(f"max by (pod) (vllm:kv_cache_usage_perc{{{sel}}})", "{{pod}}"),
        ], "Near 1 the engine preempts sequences; the second LLM scaling signal."),
        Panel("Preemptions", "short", [
            Query(f"sum(rate(vllm:num_preemptions_total{{{sel}}}[$__rate_interval]))", "preempted/s"),
        ]),
        *_traffic_panels(sel),
    ]


def _cv() -> list[Panel]:
    sel = SERVICE
    return [
        *_slo_panels(),
        *_traffic_panels(sel),
        Panel("Time per stage (p95)", "s", _quantiles("kubemind_stage_duration_seconds", sel, by="stage", qs=(0.95,)),
              "queue = waiting for the model (the batcher); decode, infer, encode = work."),
        Panel("Queue time in the server", "s", _quantiles("kubemind_stage_duration_seconds", f'{sel},stage="queue"', qs=(0.5, 0.95, 0.99))),
        Panel("Queue time in Triton (mean)", "s", [Query(
            f"sum by (model) (rate(kubemind_triton_queue_duration_seconds_total{{{sel}}}[$__rate_interval]))"
            f" / sum by (model) (rate(kubemind_triton_requests_succeeded_total{{{sel}}}[$__rate_interval]))", "{{model}}")]),
        Panel("Pending in Triton", "short", [Query(f"sum by (model) (kubemind_triton_pending_requests{{{sel}}})", "{{model}}")]),
        Panel("Batch size", "short", [
            *_quantiles("kubemind_batch_size", sel, qs=(0.5, 0.95)),
            # Stock Triton (the embedder): inferences per model execution.
            Query(f"sum by (model) (rate(nv_inference_count{{{sel}}}[$__rate_interval])) / "
                  f"sum by (model) (rate(nv_inference_exec_count{{{sel}}}[$__rate_interval]))", "triton {{model}}"),
        ]),
        Panel("In flight", "short", [Query(f"sum by (pod) (kubemind_requests_in_flight{{{sel}}})", "{{pod}}")]),
        Panel("Embeddings: Triton queue and compute (mean)", "µs", [
            Query(f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[$__rate_interval])) / sum(rate(nv_inference_request_success{{{sel}}}[$__rate_interval]))", "queue"),
            Query(f"sum(rate(nv_inference_compute_infer_duration_us{{{sel}}}[$__rate_interval])) / sum(rate(nv_inference_request_success{{{sel}}}[$__rate_interval]))", "compute"),
        ]),
    ]


def _rag() -> list[Panel]:
    sel = SERVICE
    return [
        *_slo_panels(),
        *_traffic_panels(sel),
        Panel("Time per RAG stage (p95)", "s", _quantiles("kubemind_rag_stage_seconds", sel, by="stage", qs=(0.95,)),
              "embed, search (Milvus), features (Feast), rerank, prompt, generate (the LLM call)."),
        Panel("Time per RAG stage (p50)", "s", _quantiles("kubemind_rag_stage_seconds", sel, by="stage", qs=(0.5,))),
        Panel("Time per server stage (p95)", "s", _quantiles("kubemind_stage_duration_seconds", sel, by="stage", qs=(0.95,))),
    ]


def _async() -> list[Panel]:
    sel = 'service=~"cv-worker.*"'
    return [
        Panel("Consumer lag (as KEDA sees it)", "short", [
            Query('sum by (scaledObject, scaler) (keda_scaler_metrics_value{scaledObject="cv-worker"})', "{{scaler}}"),
        ], "Kafka consumer-group lag or RabbitMQ queue length: the worker's scaling signal."),
        Panel("Job outcomes", "short", [
            Query(f"sum by (outcome) (rate(kubemind_jobs_outcomes_total{{{sel}}}[$__rate_interval]))", "{{outcome}}"),
        ]),
        Panel("Dead letters", "short", [
            Query(f'sum(increase(kubemind_jobs_outcomes_total{{{sel},outcome="dead_lettered"}}[1h]))', "dead-lettered / 1h"),
        ], "Inspectable in Postgres (state failed) and the broker's <topic>.dead."),
        Panel("Webhook attempts", "short", [
            Query(f"sum by (result) (rate(kubemind_webhook_attempts_total{{{sel}}}[$__rate_interval]))", "{{result}}"),
        ]),
        Panel("Micro-batch size", "short", _quantiles("kubemind_jobs_batch_size", sel, qs=(0.5, 0.95))),
        Panel("Micro-batch inference", "s", _quantiles("kubemind_jobs_inference_duration_seconds", sel)),
        Panel("Workers", "short", [Query('sum(up{service=~"cv-worker.*"})', "up")]),
    ]


def _release() -> list[Panel]:
    sel = SERVICE
    by_revision = f"{sel},{INFER}"
    return [
        Panel("Canary weight", "percent", [
            Query(f"max by (inferenceservice) (kubemind_rollout_canary_weight_percent{{{sel}}})", "{{inferenceservice}}"),
        ]),
        Panel("Gate values", "short", [
            Query(f"max by (gate) (kubemind_rollout_gate_value{{{sel}}})", "{{gate}}"),
            Query(f"max by (gate) (kubemind_rollout_gate_threshold{{{sel}}})", "{{gate}} threshold"),
        ], "A gate holds the rollout while its value is past its threshold, or missing (fail closed)."),
        Panel("Requests by revision", "reqps", [
            Query(f"sum by (revision) (rate(kubemind_requests_total{{{by_revision}}}[$__rate_interval]))", "{{revision}}"),
        ]),
        Panel("Error ratio by revision", "percentunit", [
            Query(f'sum by (revision) (rate(kubemind_requests_total{{{by_revision},code=~"5.."}}[$__rate_interval]))'
                  f" / sum by (revision) (rate(kubemind_requests_total{{{by_revision}}}[$__rate_interval]))", "{{revision}}"),
        ]),
        Panel("p95 latency by revision", "s", _quantiles("kubemind_request_duration_seconds", by_revision, by="revision", qs=(0.95,))),
        *_slo_panels(),
    ]


KINDS = {
    "llm": ("LLM serving", _llm),
    "cv": ("CV and embeddings", _cv),
    "rag": ("RAG", _rag),
    "async": ("Async jobs", _async),
    "release": ("Releases", _release),
}


def build(kind: str) -> Dashboard:
    title, panels = KINDS[kind]
    board = (
        dashboard.Dashboard(f"kubemind: {title}")
        .uid(f"kubemind-{kind}")
        .tags(["kubemind", kind])
        .refresh("30s")
        .time("now-3h", "now")
        .with_variable(dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus"))
        .with_variable(
            dashboard.QueryVariable("inferenceservice")
            .label("InferenceService")
            .datasource(DATASOURCE)
            .query("label_values(up, inferenceservice)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    for index, panel in enumerate(panels()):
        built = (
            timeseries.Panel()
            .title(panel.title)
            .unit(panel.unit)
            .datasource(DATASOURCE)
            .legend(common.VizLegendOptions().display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM).show_legend(True))
            .tooltip(common.VizTooltipOptions().mode(TooltipDisplayMode.MULTI).sort(SortOrder.DESCENDING))
            .grid_pos(GridPos(h=8, w=12, x=12 * (index % 2), y=8 * (index // 2)))
        )
        if panel.description:
            built = built.description(panel.description)
        for ref, query in zip("ABCDEFGH", panel.queries, strict=False):
            built = built.with_target(
                prometheus.Dataquery().expr(query.expr).legend_format(query.legend).ref_id(ref).datasource(DATASOURCE)
            )
        board = board.with_panel(built)
    return board.build()


def dashboard_json(kind: str) -> str:
    return json.dumps(build(kind), cls=JSONEncoder, sort_keys=True, indent=2) + "\n"
