"""`kubemind rollout rehearse NAME`: the commands that take one InferenceService of a running
`kubemind up` through a canary, end to end, on this machine, printed with this machine's paths.

It writes what they need into $KUBEMIND_HOME/up/rehearsal: a Prometheus configuration scraping
the replicas `up` lists in its file_sd targets file (it follows revisions as they come and go),
and, for a v2 model whose inputs have fixed shapes, a request body for the traffic loop (from
the model's metadata through the gateway). The `rehearsal` RolloutPolicy is the local overlay's
(inferenceservices/overlays/local/rehearsal-policy.yaml: 2 s intervals, 20 % then 50 %).
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

from kubemind.errors import KubemindError
from kubemind.local.up.state import prometheus_targets_path, running_up, up_home
from kubemind.release.policy import POLICY_ANNOTATION

POLICY = "rehearsal"
PROMETHEUS_URL = "http://127.0.0.1:9090"
REVISION_VARIABLE = "KUBEMIND_REHEARSAL_REVISION"
"""Set on the predictor's container to make a new revision: a change no kubemind server reads."""

ZERO = {"BOOL": False, "BYTES": ""}


def prometheus_config(targets: Path, scrape_interval: str = "1s") -> dict[str, Any]:
    return {"global": {"scrape_interval": scrape_interval, "evaluation_interval": scrape_interval},
            "scrape_configs": [{"job_name": "kubemind-up",
                                "file_sd_configs": [{"files": [str(targets)], "refresh_interval": "1s"}]}]}


def sample_request(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """A v2 request of zeros for a model's inputs (-1 dimensions as 1); None when the model has
    no inputs to fill (an LLM's text is not a tensor the rehearsal can make up)."""
    inputs = []
    for tensor in metadata.get("inputs") or []:
        shape = [1 if int(d) < 0 else int(d) for d in tensor.get("shape") or []]
        datatype = str(tensor.get("datatype", ""))
        inputs.append({"name": tensor["name"], "datatype": datatype, "shape": shape,
                       "data": [ZERO.get(datatype, 0)] * math.prod(shape)})
    return {"inputs": inputs} if inputs else None


def new_revision_patch(isvc: dict[str, Any], canary: int) -> list[dict[str, Any]]:
    """A JSON patch making a new predictor revision with a `canary` % split: one env variable
    more (`REVISION_VARIABLE`, the next number) on its container or model."""
    predictor = isvc["spec"]["predictor"]
    path, env = (("/spec/predictor/containers/0/env", predictor["containers"][0].get("env") or [])
                 if predictor.get("containers") else ("/spec/predictor/model/env", (predictor.get("model") or {}).get("env") or []))
    previous = next((int(e["value"]) for e in env if e.get("name") == REVISION_VARIABLE), 1)
    kept = [e for e in env if e.get("name") != REVISION_VARIABLE]
    return [{"op": "add", "path": "/spec/predictor/canaryTrafficPercent", "value": canary},
            {"op": "add", "path": path, "value": [*kept, {"name": REVISION_VARIABLE, "value": str(previous + 1)}]}]


def rehearsal(name: str, namespace: str, isvc: dict[str, Any], canary: int = 20,
              prometheus_url: str = PROMETHEUS_URL) -> str:
    """Write the rehearsal's files and return the commands, in order; the Prometheus they start
    listens where `prometheus_url` says, and the controller queries it there."""
    state = running_up()
    if state is None:
        raise KubemindError("no `kubemind up` is running here: start one first (make serve, or kubemind up)")
    service = next((s for s in state.get("services", []) if (s["namespace"], s["name"]) == (namespace, name)), None)
    if service is None:
        raise KubemindError(f"`kubemind up` runs no InferenceService {namespace}/{name}")
    folder = up_home() / "rehearsal"
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config(prometheus_targets_path())))
    url = service["path_url"]
    try:
        metadata = httpx.get(f"{url}/v2/models/{name}", timeout=10).json()
    except (httpx.HTTPError, ValueError):
        metadata = {}
    request = sample_request(metadata if isinstance(metadata, dict) else {})
    kubeconfig = (state.get("api") or {}).get("kubeconfig", "")
    patch = json.dumps(new_revision_patch(isvc, canary), separators=(",", ":"))
    lines = [
        f"# Rehearse a canary of {namespace}/{name} on this machine, in order (docs/release.md).",
        "# 1. Prometheus, scraping the replicas `kubemind up` lists (its targets file follows the revisions):",
        f"prometheus --config.file={config} --storage.tsdb.path={folder / 'prometheus-data'}"
        f" --web.listen-address={urlsplit(prometheus_url).netloc} &",
        "# 2. kubectl and the controller talk to the local Kubernetes API:",
        f"export KUBECONFIG={kubeconfig}",
        f"# 3. {name} names the local overlay's `{POLICY}` RolloutPolicy:",
        f"kubectl -n {namespace} annotate isvc {name} {POLICY_ANNOTATION}={POLICY} --overwrite",
    ]
    if request is not None:
        body = folder / f"{name}-request.json"
        body.write_text(json.dumps(request))
        lines += ["# 4. traffic for the gates, through the gateway (leave it running; Ctrl+C at the end):",
                  f"while sleep 0.05; do curl -s -o /dev/null -X POST {url}/v2/models/{name}/infer -d @{body}; done &"]
    else:
        lines += [f"# 4. traffic for the gates: send {name} requests through {url} while the rollout runs"]
    lines += [
        f"# 5. a new revision with a {canary} % canary (a release changes the image, args or storageUri):",
        f"kubectl -n {namespace} patch isvc {name} --type json -p {shlex.quote(patch)}",
        "# 6. the controller, in the foreground until the candidate is promoted or rolled back:",
        f"kubemind rollout run {name} -n {namespace} --prometheus_url {prometheus_url}",
        f"kubemind rollout status {name} -n {namespace}",
        f"kubemind audit show --model {name} && kubemind audit verify",
    ]
    return "\n".join(lines)
