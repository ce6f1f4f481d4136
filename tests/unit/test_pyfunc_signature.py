"""MLflow `MLmodel` signatures -> v2 signatures at registration (`--flavor pyfunc`).

The MLmodel files here are what `mlflow.pyfunc.save_model` writes (copied from MLflow 3.17);
reading them needs no MLflow import."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubemind.errors import InvalidInput
from kubemind_registry.signatures import FLAVORS, infer_signature

COLUMNS = """\
flavors:
  python_function:
    loader_module: mlflow.pyfunc.model
    python_model: python_model.pkl
mlflow_version: 3.17.2
signature:
  inputs: '[{"type": "double", "name": "a", "required": true}, {"type": "long", "name":
    "b", "required": true}, {"type": "string", "name": "name", "required": true},
    {"type": "boolean", "name": "flag", "required": true}, {"type": "float", "name": "f"},
    {"type": "integer", "name": "i"}, {"type": "binary", "name": "blob"}]'
  outputs: '[{"type": "double", "name": "total", "required": true}, {"type": "string",
    "name": "label", "required": true}]'
  params: null
"""

TENSORS = """\
flavors:
  python_function:
    loader_module: mlflow.pyfunc.model
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "int64", "shape": [-1]}}]'
  params: null
"""

NAMED_TENSORS = """\
flavors:
  python_function: {}
signature:
  inputs: '[{"type": "tensor", "name": "x", "tensor-spec": {"dtype": "uint8", "shape": [-1, 2, 2]}},
    {"type": "tensor", "name": "s", "tensor-spec": {"dtype": "str", "shape": [-1]}}]'
  outputs: '[{"type": "long"}, {"type": "double"}]'
"""


def model_folder(tmp_path: Path, mlmodel: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text(mlmodel)
    return folder


def test_pyfunc_is_a_flavor() -> None:
    assert "pyfunc" in FLAVORS


def test_columns_become_one_dimensional_tensors_with_the_table_datatypes(tmp_path: Path) -> None:
    signature = infer_signature(model_folder(tmp_path, COLUMNS), "pyfunc").to_dict()
    assert signature["inputs"] == [
        {"name": "a", "datatype": "FP64", "shape": [-1]},
        {"name": "b", "datatype": "INT64", "shape": [-1]},
        {"name": "name", "datatype": "BYTES", "shape": [-1]},
        {"name": "flag", "datatype": "BOOL", "shape": [-1]},
        {"name": "f", "datatype": "FP32", "shape": [-1]},
        {"name": "i", "datatype": "INT32", "shape": [-1]},
        {"name": "blob", "datatype": "BYTES", "shape": [-1]},
    ]
    assert signature["outputs"] == [
        {"name": "total", "datatype": "FP64", "shape": [-1]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]


def test_tensor_specs_keep_their_shape(tmp_path: Path) -> None:
    signature = infer_signature(model_folder(tmp_path, TENSORS), "pyfunc").to_dict()
    assert signature == {
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 3]}],
        "outputs": [{"name": "output", "datatype": "INT64", "shape": [-1]}],
    }


def test_named_tensors_and_unnamed_columns(tmp_path: Path) -> None:
    signature = infer_signature(model_folder(tmp_path, NAMED_TENSORS), "pyfunc").to_dict()
    assert signature == {
        "inputs": [
            {"name": "x", "datatype": "UINT8", "shape": [-1, 2, 2]},
            {"name": "s", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": "output_0", "datatype": "INT64", "shape": [-1]},
            {"name": "output_1", "datatype": "FP64", "shape": [-1]},
        ],
    }


@pytest.mark.parametrize(
    ("mlmodel", "message"),
    [
        (None, "no MLmodel file"),
        ("flavors:\n  sklearn: {}\n", "no python_function"),
        ("flavors:\n  python_function: {}\n", "without a signature"),
        (
            "flavors:\n  python_function: {}\nsignature:\n"
            "  inputs: '[{\"type\": \"datetime\", \"name\": \"when\"}]'\n",
            "'when' has type 'datetime'",
        ),
    ],
)
def test_folders_that_are_not_usable_mlflow_models_are_refused(
    tmp_path: Path, mlmodel: str | None, message: str
) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    if mlmodel is not None:
        (folder / "MLmodel").write_text(mlmodel)
    with pytest.raises(InvalidInput, match=message):
        infer_signature(folder, "pyfunc")
