"""Micro-batches: several jobs' v2 requests as one inference call, and its outputs split back.

Jobs go in one call when the model batches (its inputs' first dimension is variable) and their
inputs agree on names, datatypes and every dimension but the first; otherwise each job is its
own call. Results are v2 response bodies, as the synchronous route returns them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kubemind.backend import Tensor
from kubemind.codecs import array_to_json, decode_rest_request
from kubemind_workers.store import Claim


@dataclass
class PreparedJob:
    claim: Claim
    inputs: list[Tensor]
    outputs: tuple[str, ...]
    rows: int

    def signature(self) -> tuple[Any, ...]:
        return (
            self.claim.model,
            self.outputs,
            tuple((t.name, t.datatype, t.array.shape[1:]) for t in self.inputs),
        )


def prepare(claim: Claim) -> PreparedJob:
    """Decode the stored request with the same codec the writer validated it with."""
    stored = claim.request
    request = decode_rest_request(stored.body, stored.json_length, claim.model, claim.model_version)
    inputs = [Tensor(t.name, t.datatype, t.as_numpy()) for t in request.inputs]
    outputs = tuple(o.name for o in request.request_outputs or ())
    rows = int(inputs[0].array.shape[0]) if inputs and inputs[0].array.ndim else 1
    return PreparedJob(claim, inputs, outputs, rows)


def group(jobs: Sequence[PreparedJob], batchable: bool, max_rows: int) -> list[list[PreparedJob]]:
    """Jobs that can share one call, at most `max_rows` rows per call."""
    if not batchable:
        return [[job] for job in jobs]
    groups: dict[tuple[Any, ...], list[list[PreparedJob]]] = {}
    for job in jobs:
        runs = groups.setdefault(job.signature(), [[]])
        if runs[-1] and sum(j.rows for j in runs[-1]) + job.rows > max_rows:
            runs.append([])
        runs[-1].append(job)
    return [run for runs in groups.values() for run in runs]


def stack_inputs(jobs: Sequence[PreparedJob]) -> list[Tensor]:
    first = jobs[0].inputs
    if len(jobs) == 1:
        return first
    return [
        Tensor(t.name, t.datatype, np.concatenate([job.inputs[i].array for job in jobs], axis=0))
        for i, t in enumerate(first)
    ]


def split_outputs(jobs: Sequence[PreparedJob], outputs: Sequence[Tensor]) -> list[dict[str, Any]]:
    """One v2 response body per job, its rows of each output."""
    results = []
    start = 0
    for job in jobs:
        end = start + job.rows
        tensors = []
        for output in outputs:
            part = output.array[start:end] if len(jobs) > 1 else output.array
            data = array_to_json(output.name, part, output.datatype)
            tensors.append(
                {"name": output.name, "datatype": output.datatype, "shape": list(part.shape),
                 "data": data.tolist() if isinstance(data, np.ndarray) else data}
            )  # fmt: skip
        results.append({"model_name": job.claim.model, "model_version": job.claim.model_version, "outputs": tensors})
        start = end
    return results
