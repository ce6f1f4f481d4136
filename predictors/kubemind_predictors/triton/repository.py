"""Build the Triton model repository for the models kubemind ships.

Layout (Triton's): `<repository>/<model>/config.pbtxt` and `<repository>/<model>/1/` holding the
Python-backend `model.py`, its helper `_runtime.py` and the model's artifacts. The same folder
serves from the tritonserver in nvidia-pytriton here and from NVIDIA's Triton image on a cluster.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from kubemind.datatypes import BY_NAME
from kubemind.errors import InvalidSettings, ModelNotFound
from kubemind.model import TensorSpec

BACKEND_SOURCES = Path(__file__).parent / "backend_models"
VERSION = "1"


@dataclass(frozen=True)
class TritonModelSpec:
    """One model of the repository: its signature (full shapes, batch dimension included) and how
    Triton runs it."""

    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    max_batch_size: int
    # artifact file name in the ONNX folder -> name inside the version folder
    artifacts: tuple[tuple[str, str], ...] = ()
    dynamic_batching: bool = False
    # Inputs Triton sees as [n, 1] that the predictor accepts as [n] (one text per item) and
    # reshapes before forwarding: Triton's batching needs the extra dimension, clients don't.
    flattened_inputs: tuple[str, ...] = ()

    def public_inputs(self) -> tuple[TensorSpec, ...]:
        """The signature the predictor publishes (flattened inputs without their trailing 1)."""
        return tuple(
            TensorSpec(t.name, t.datatype, t.shape[:-1]) if t.name in self.flattened_inputs else t
            for t in self.inputs
        )


SHIPPED_MODELS: dict[str, TritonModelSpec] = {
    spec.name: spec
    for spec in (
        TritonModelSpec(
            name="efficientnet_lite0",
            # Resized RGB pixels; the graph normalises them (export.with_uint8_image_input).
            inputs=(TensorSpec("input", "UINT8", (-1, 224, 224, 3)),),
            outputs=(TensorSpec("logits", "FP32", (-1, 1000)),),
            max_batch_size=32,
            artifacts=(("efficientnet_lite0.onnx", "model.onnx"),),
            dynamic_batching=True,
        ),
        TritonModelSpec(
            name="minilm",
            inputs=(TensorSpec("text", "BYTES", (-1, 1)),),
            outputs=(TensorSpec("embedding", "FP32", (-1, 384)), TensorSpec("tokens", "INT32", (-1, 1))),
            max_batch_size=64,
            artifacts=(("minilm.onnx", "model.onnx"), ("minilm_tokenizer.json", "tokenizer.json")),
            dynamic_batching=True,
            flattened_inputs=("text",),
        ),
        TritonModelSpec(
            name="simple",
            inputs=(TensorSpec("INPUT0", "INT32", (-1, 16)), TensorSpec("INPUT1", "INT32", (-1, 16))),
            outputs=(TensorSpec("OUTPUT0", "INT32", (-1, 16)), TensorSpec("OUTPUT1", "INT32", (-1, 16))),
            max_batch_size=8,
        ),
    )
}

def shipped_model(name: str) -> TritonModelSpec:
    try:
        return SHIPPED_MODELS[name]
    except KeyError:
        raise ModelNotFound(
            f"kubemind ships no Triton model '{name}' (available: {', '.join(SHIPPED_MODELS)})"
        ) from None


def _tensor_block(spec: TensorSpec, batched: bool) -> str:
    dims = list(spec.shape[1:] if batched else spec.shape)
    data_type = BY_NAME[spec.datatype].triton
    return f'  {{ name: "{spec.name}" data_type: {data_type} dims: {dims} }}'


def render_config(spec: TritonModelSpec, *, instances: int = 1, intra_op_threads: int = 1) -> str:
    """config.pbtxt for one model."""
    batched = spec.max_batch_size > 0
    inputs = ",\n".join(_tensor_block(t, batched) for t in spec.inputs)
    outputs = ",\n".join(_tensor_block(t, batched) for t in spec.outputs)
    lines = [
        f'name: "{spec.name}"',
        'backend: "python"',
        f"max_batch_size: {spec.max_batch_size}",
        f"input [\n{inputs}\n]",
        f"output [\n{outputs}\n]",
        f"instance_group [ {{ kind: KIND_CPU count: {instances} }} ]",
        # A short window: on CPU a batch of 8 costs far less than 8 single images, and 2 ms is
        # well under one image's inference time, so a lone request barely waits.
        "dynamic_batching { max_queue_delay_microseconds: 2000 }" if spec.dynamic_batching else "",
        f'parameters {{ key: "intra_op_threads" value: {{ string_value: "{intra_op_threads}" }} }}',
    ]
    return "\n".join(line for line in lines if line) + "\n"


def build_repository(
    target: Path,
    models: Iterable[str],
    onnx_dir: Path | None,
    *,
    intra_op_threads: int = 1,
    copy_artifacts: bool = False,
) -> Path:
    """Write a model repository for `models` into `target` (replacing what was there).

    Artifacts are symlinked from `onnx_dir` unless `copy_artifacts` (for a repository that is
    shipped elsewhere, e.g. uploaded for a cluster's Triton).
    """
    place: Callable[[Path, Path], object] = shutil.copyfile if copy_artifacts else _symlink
    target.mkdir(parents=True, exist_ok=True)
    for name in models:
        spec = shipped_model(name)
        model_dir = target / name
        if model_dir.exists():
            shutil.rmtree(model_dir)
        version_dir = model_dir / VERSION
        version_dir.mkdir(parents=True)
        (model_dir / "config.pbtxt").write_text(render_config(spec, intra_op_threads=intra_op_threads))
        shutil.copyfile(BACKEND_SOURCES / f"{name}.py", version_dir / "model.py")
        shutil.copyfile(BACKEND_SOURCES / "_runtime.py", version_dir / "_runtime.py")
        for source_name, target_name in spec.artifacts:
            if onnx_dir is None or not (onnx_dir / source_name).is_file():
                raise InvalidSettings(
                    f"model '{name}' needs {source_name} in the ONNX folder {onnx_dir}; "
                    "run `make install` (tools/install.d/40-triton.sh exports it)"
                )
            place((onnx_dir / source_name).resolve(), version_dir / target_name)
    return target


def _symlink(source: Path, link: Path) -> None:
    link.symlink_to(source)
