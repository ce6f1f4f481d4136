"""Pieces of the async path that need no services: callback URL policy, micro-batch grouping and
splitting, migration file naming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from kubemind.backend import Tensor
from kubemind.codecs import binary_rest_request
from kubemind.errors import InvalidInput
from kubemind_workers.batching import group, prepare, split_outputs, stack_inputs
from kubemind_workers.callback_urls import CallbackPolicy
from kubemind_workers.schema import migrations
from kubemind_workers.store import Claim, Job, StoredRequest


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://127.0.0.1:9/x", "loopback"),
        ("http://192.168.1.4/x", "private"),
        ("http://[fe80::1]/x", "link-local"),
        ("http://0.0.0.0/x", "private"),
        ("file:///etc/passwd", "scheme"),
        ("http://host:notaport/x", "malformed"),
        ("https:///x", "no host"),
    ],
)
async def test_refused_callback_urls(url: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as refused:
        await CallbackPolicy([]).check(url)
    assert refused.value.param == "callback_url"


async def test_allow_list_takes_hosts_and_cidr_ranges() -> None:
    assert await CallbackPolicy(["127.0.0.0/8"]).check("http://127.0.0.1:9/x")
    assert await CallbackPolicy(["10.1.2.3"]).check("http://10.1.2.3/x")
    assert await CallbackPolicy([]).check("https://93.184.215.14/hook")
    with pytest.raises(InvalidInput):
        await CallbackPolicy(["10.0.0.0/24"]).check("http://10.0.1.1/x")


def claim(job: str, rows: int, width: int = 16, *, binary: bool = False) -> Claim:
    """A claimed `simple` job whose inputs are both arange(rows * width), stored as a JSON body
    (what a v2 JSON submit stores) or in the binary-tensor form (what an image upload stores)."""
    data = np.arange(rows * width, dtype=np.int32).reshape(rows, width)
    if binary:
        request = StoredRequest(*binary_rest_request([("INPUT0", "INT32", data), ("INPUT1", "INT32", data)]))
    else:
        request = StoredRequest(json.dumps({"inputs": [
            {"name": "INPUT0", "datatype": "INT32", "shape": [rows, width], "data": data.ravel().tolist()},
            {"name": "INPUT1", "datatype": "INT32", "shape": [rows, width], "data": data.ravel().tolist()},
        ], "callback_url": "http://127.0.0.1:9/hook"}).encode())  # fmt: skip
    return Claim(Job(job, "simple", "1", "running", request, "http://127.0.0.1:9/hook", 1, None, None, "pending", 0, None))


def test_compatible_jobs_share_a_call_and_get_their_own_rows_back() -> None:
    jobs = [prepare(claim("a", 1)), prepare(claim("b", 2)), prepare(claim("c", 1, width=8))]

    runs = group(jobs, batchable=True, max_rows=8)

    assert [[j.claim.job_id for j in run] for run in runs] == [["a", "b"], ["c"]]
    stacked = stack_inputs(runs[0])
    assert stacked[0].array.shape == (3, 16)
    doubled = Tensor("OUTPUT0", "INT32", stacked[0].array * 2)
    first, second = split_outputs(runs[0], [doubled])
    assert first["outputs"][0]["shape"] == [1, 16] and second["outputs"][0]["shape"] == [2, 16]
    np.testing.assert_array_equal(np.array(second["outputs"][0]["data"]), np.arange(32) * 2)


def test_a_binary_stored_request_decodes_to_the_same_tensors_as_its_json_form() -> None:
    as_json, as_binary = prepare(claim("j", 2)), prepare(claim("b", 2, binary=True))
    assert as_binary.claim.request.json_length is not None and as_json.claim.request.json_length is None
    assert as_json.signature() == as_binary.signature()
    for left, right in zip(as_json.inputs, as_binary.inputs, strict=True):
        assert (left.name, left.datatype) == (right.name, right.datatype)
        np.testing.assert_array_equal(left.array, right.array)
    assert [len(run) for run in group([as_json, as_binary], batchable=True, max_rows=8)] == [2]


def test_runs_respect_the_row_limit_and_unbatchable_models_go_one_by_one() -> None:
    jobs = [prepare(claim(str(i), 3)) for i in range(4)]

    assert [len(run) for run in group(jobs, batchable=True, max_rows=8)] == [2, 2]
    assert [len(run) for run in group(jobs, batchable=False, max_rows=8)] == [1, 1, 1, 1]


def test_migrations_are_numbered_in_order(tmp_path: Path) -> None:
    assert [m.version for m in migrations()] == sorted(m.version for m in migrations())
    (tmp_path / "1_bad.sql").write_text("SELECT 1")
    with pytest.raises(ValueError, match="NNNN"):
        migrations(tmp_path)
