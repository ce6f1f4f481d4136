"""The v2 signature of a model folder, inferred per flavor (or read from a JSON file).

Runs at registration time on the data scientist's machine; `onnx` is imported only here and
only for the onnx flavor. An MLflow model's signature is read from its `MLmodel` file as YAML
and JSON, without importing MLflow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from kubemind.datatypes import from_mlflow_column, from_onnx, from_triton, v2_name_of
from kubemind.errors import InvalidInput
from kubemind_registry.served import Signature, TensorSignature

FLAVORS = ("hf-llm", "onnx", "triton-repo", "sentence-transformers", "pyfunc", "rag-index")

# A retrieval index (`kubemind rag index`): its manifest's file name, checked here at registration
# and used by the indexer and the RAG transformer (kubemind_transformers.rag.index).
INDEX_MANIFEST = "index.json"

# flavor -> (framework tag, default task tag)
FLAVOR_TAGS = {
    "hf-llm": ("transformers", "text-generation"),
    "onnx": ("onnx", "inference"),
    "triton-repo": ("triton", "inference"),
    "sentence-transformers": ("sentence-transformers", "feature-extraction"),
    "pyfunc": ("mlflow", "inference"),
    "rag-index": ("milvus", "retrieval"),
}

# Text in, text out: the names KServe's and Triton's generate endpoints use.
_TEXT_GENERATION = Signature(
    inputs=(TensorSignature("text_input", "BYTES", (-1,)),),
    outputs=(TensorSignature("text_output", "BYTES", (-1,)),),
)


def load_signature_file(path: Path) -> Signature:
    try:
        return Signature.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"--signature {path}: not a v2 signature file: {exc}") from None


def infer_signature(model_dir: Path, flavor: str) -> Signature:
    if flavor == "onnx":
        return _onnx_signature(model_dir)
    if flavor == "hf-llm":
        return _TEXT_GENERATION
    if flavor == "sentence-transformers":
        return _sentence_transformers_signature(model_dir)
    if flavor == "triton-repo":
        return _triton_signature(model_dir)
    if flavor == "pyfunc":
        return _pyfunc_signature(model_dir)
    if flavor == "rag-index":
        return _rag_index_signature(model_dir)
    raise InvalidInput(f"unknown flavor {flavor!r}; choose one of {', '.join(FLAVORS)}")


def _rag_index_signature(model_dir: Path) -> Signature:
    """An index has no tensors of its own (the RAG transformer queries it), so its signature is
    empty; registering checks that the folder is an index whose manifest names its embedder, the
    one thing the transformer checks before it serves from it."""
    path = model_dir / INDEX_MANIFEST
    if not path.is_file():
        raise InvalidInput(
            f"{model_dir}: holds no {INDEX_MANIFEST}; build the index with `kubemind rag index --index_dir {model_dir}`"
        )
    try:
        embedder = json.loads(path.read_text())["embedder"]
        name, version, dimension = str(embedder["name"]), str(embedder["version"]), int(embedder["dimension"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InvalidInput(f"{path}: not an index manifest (it must name its embedder): {exc!r}") from None
    if not (name and version and dimension > 0):
        raise InvalidInput(f"{path}: the embedder's name, version and dimension must be set")
    return Signature()


def _onnx_signature(model_dir: Path) -> Signature:
    candidates = sorted(model_dir.rglob("*.onnx"))
    if len(candidates) != 1:
        raise InvalidInput(
            f"{model_dir}: expected exactly one .onnx file, found {len(candidates)};"
            " pass --signature FILE to declare the signature"
        )
    return onnx_graph_signature(candidates[0])


def onnx_graph_signature(path: Path) -> Signature:
    """The v2 signature of one ONNX file's graph (also the ONNX predictor's fallback for a folder
    the initializer did not prepare)."""
    import onnx  # release-time, or the predictor's fallback only

    # Graph structure only: skip loading external weight files.
    graph = onnx.load(str(path), load_external_data=False).graph
    initializers = {init.name for init in graph.initializer}

    def tensor(value: onnx.ValueInfoProto) -> TensorSignature:
        tensor_type = value.type.tensor_type
        datatype = from_onnx(tensor_type.elem_type)
        if datatype is None:
            raise InvalidInput(f"{path.name}: tensor {value.name!r} has an unsupported type")
        shape = tuple(
            dim.dim_value if dim.HasField("dim_value") else -1 for dim in tensor_type.shape.dim
        )
        return TensorSignature(value.name, datatype.name, shape)

    return Signature(
        inputs=tuple(tensor(v) for v in graph.input if v.name not in initializers),
        outputs=tuple(tensor(v) for v in graph.output),
    )


def _sentence_transformers_signature(model_dir: Path) -> Signature:
    dimension = -1
    pooling = model_dir / "1_Pooling" / "config.json"
    config = model_dir / "config.json"
    if pooling.is_file():
        dimension = int(json.loads(pooling.read_text()).get("word_embedding_dimension", -1))
    elif config.is_file():
        dimension = int(json.loads(config.read_text()).get("hidden_size", -1))
    return Signature(
        inputs=(TensorSignature("text", "BYTES", (-1,)),),
        outputs=(TensorSignature("embedding", "FP32", (-1, dimension)),),
    )


_TRITON_TENSOR = re.compile(
    r"\{[^{}]*?name:\s*\"(?P<name>[^\"]+)\"[^{}]*?data_type:\s*(?P<type>TYPE_\w+)"
    r"[^{}]*?dims:\s*\[(?P<dims>[^\]]*)\][^{}]*\}",
    re.S,
)


def _triton_section(text: str, key: str) -> str:
    match = re.search(rf"\b{key}\s*\[", text)
    if not match:
        return ""
    depth, start = 0, match.end() - 1
    for index in range(start, len(text)):
        depth += {"[": 1, "]": -1}.get(text[index], 0)
        if depth == 0:
            return text[start : index + 1]
    return text[start:]


def _triton_signature(repo_dir: Path) -> Signature:
    """Inputs and outputs of the repository's model: the single model, or the ensemble when
    the repository holds several (clients call the ensemble)."""
    configs = sorted(repo_dir.glob("*/config.pbtxt"))
    if not configs:
        raise InvalidInput(f"{repo_dir}: no */config.pbtxt; is this a Triton model repository?")
    ensembles = [c for c in configs if 'platform: "ensemble"' in c.read_text()]
    chosen = ensembles[0] if len(ensembles) == 1 else configs[0] if len(configs) == 1 else None
    if chosen is None:
        raise InvalidInput(
            f"{repo_dir}: several models and no single ensemble; pass --signature FILE"
        )
    text = chosen.read_text()

    def tensors(section: str) -> tuple[TensorSignature, ...]:
        found = []
        for match in _TRITON_TENSOR.finditer(_triton_section(text, section)):
            dims = tuple(int(d) for d in match["dims"].replace(" ", "").split(",") if d)
            found.append(TensorSignature(match["name"], from_triton(match["type"]).name, dims))
        return tuple(found)

    return Signature(inputs=tensors("input"), outputs=tensors("output"))


MLMODEL_FILE = "MLmodel"


def _pyfunc_signature(model_dir: Path) -> Signature:
    """The v2 signature of an MLflow model folder (what `mlflow.pyfunc.save_model` writes).

    Column-based signatures become one v2 input of shape [-1] per column; tensor-based ones
    keep their shape. Unnamed tensors and columns are called input/output (input_0, ... when
    there are several)."""
    import yaml

    mlmodel = model_dir / MLMODEL_FILE
    if not mlmodel.is_file():
        raise InvalidInput(
            f"{model_dir}: no {MLMODEL_FILE} file; register the folder that"
            " mlflow.pyfunc.save_model (or log_model) wrote"
        )
    try:
        meta = yaml.safe_load(mlmodel.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InvalidInput(f"{mlmodel}: not valid YAML: {exc}") from None
    if "python_function" not in (meta.get("flavors") or {}):
        raise InvalidInput(f"{mlmodel}: the model has no python_function (pyfunc) flavor")
    signature = meta.get("signature") or {}
    if not signature.get("inputs"):
        raise InvalidInput(
            f"{mlmodel}: the model was logged without a signature; log it with"
            " signature=mlflow.models.infer_signature(...) or pass --signature FILE"
        )
    return Signature(
        inputs=_mlflow_schema(mlmodel, signature.get("inputs"), "input"),
        outputs=_mlflow_schema(mlmodel, signature.get("outputs"), "output"),
    )


def _mlflow_schema(mlmodel: Path, schema: object, role: str) -> tuple[TensorSignature, ...]:
    if not schema:
        return ()
    try:
        specs = json.loads(schema) if isinstance(schema, str) else schema
    except ValueError as exc:
        raise InvalidInput(f"{mlmodel}: {role} schema is not JSON: {exc}") from None
    if not isinstance(specs, list):
        raise InvalidInput(f"{mlmodel}: {role} schema is not a list of columns or tensors")

    def default_name(index: int) -> str:
        return role if len(specs) == 1 else f"{role}_{index}"

    tensors = []
    for index, spec in enumerate(specs):
        name = str(spec.get("name") or default_name(index))
        if spec.get("type") == "tensor":
            tensor_spec = spec.get("tensor-spec") or {}
            try:
                found = v2_name_of(np.dtype(tensor_spec.get("dtype")))
            except TypeError:
                found = None
            if found is None:
                raise InvalidInput(
                    f"{mlmodel}: {role} {name!r} has dtype {tensor_spec.get('dtype')!r},"
                    " which has no v2 datatype; pass --signature FILE"
                )
            shape = tuple(int(d) for d in tensor_spec.get("shape", (-1,)))
            tensors.append(TensorSignature(name, found, shape))
            continue
        datatype = from_mlflow_column(str(spec.get("type")))
        if datatype is None:
            raise InvalidInput(
                f"{mlmodel}: {role} column {name!r} has type {spec.get('type')!r}, which has no"
                " v2 datatype; pass --signature FILE"
            )
        tensors.append(TensorSignature(name, datatype.name, (-1,)))
    return tuple(tensors)
