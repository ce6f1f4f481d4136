"""The one datatype table: v2 (Open Inference Protocol) names, numpy, Triton's model
configuration, ONNX element types and MLflow's column types.

The codecs, the model configuration (`KubemindModel.triton_config`), the Triton repository
renderer and the registry's signatures all read this table, so a datatype added here exists
everywhere at once. BF16 has no numpy type: it is held as float32 in memory and travels as the
upper 16 bits of each float32 (what Triton and tritonclient do).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kubemind.errors import InvalidInput


@dataclass(frozen=True)
class Datatype:
    """One v2 datatype and its names elsewhere."""

    name: str
    """The v2 name: INT32, FP32, BYTES, ..."""
    numpy: np.dtype
    """How kubemind holds it in memory (BYTES: object arrays of bytes; BF16: float32)."""
    wire_size: int
    """Bytes per element in raw / binary form (0 for BYTES: length-prefixed)."""
    triton: str
    """Triton's config.pbtxt name (TYPE_...)."""
    triton_enum: int
    """Triton's DataType enum number (model_config.proto)."""
    onnx: int
    """onnx.TensorProto element type."""


DATATYPE_TABLE: tuple[Datatype, ...] = (
    Datatype("BOOL", np.dtype(np.bool_), 1, "TYPE_BOOL", 1, 9),
    Datatype("UINT8", np.dtype(np.uint8), 1, "TYPE_UINT8", 2, 2),
    Datatype("UINT16", np.dtype(np.uint16), 2, "TYPE_UINT16", 3, 4),
    Datatype("UINT32", np.dtype(np.uint32), 4, "TYPE_UINT32", 4, 12),
    Datatype("UINT64", np.dtype(np.uint64), 8, "TYPE_UINT64", 5, 13),
    Datatype("INT8", np.dtype(np.int8), 1, "TYPE_INT8", 6, 3),
    Datatype("INT16", np.dtype(np.int16), 2, "TYPE_INT16", 7, 5),
    Datatype("INT32", np.dtype(np.int32), 4, "TYPE_INT32", 8, 6),
    Datatype("INT64", np.dtype(np.int64), 8, "TYPE_INT64", 9, 7),
    Datatype("FP16", np.dtype(np.float16), 2, "TYPE_FP16", 10, 10),
    Datatype("FP32", np.dtype(np.float32), 4, "TYPE_FP32", 11, 1),
    Datatype("FP64", np.dtype(np.float64), 8, "TYPE_FP64", 12, 11),
    Datatype("BYTES", np.dtype(np.object_), 0, "TYPE_STRING", 13, 8),
    Datatype("BF16", np.dtype(np.float32), 2, "TYPE_BF16", 14, 16),
)

BY_NAME: dict[str, Datatype] = {d.name: d for d in DATATYPE_TABLE}
BY_TRITON: dict[str, Datatype] = {d.triton: d for d in DATATYPE_TABLE}
BY_TRITON_ENUM: dict[int, Datatype] = {d.triton_enum: d for d in DATATYPE_TABLE}
BY_ONNX: dict[int, Datatype] = {d.onnx: d for d in DATATYPE_TABLE}
V2_NAMES: frozenset[str] = frozenset(BY_NAME)
# numpy dtype -> v2 name; float32 means FP32 (BF16 is never inferred from an array).
_BY_NUMPY: dict[np.dtype, str] = {d.numpy: d.name for d in reversed(DATATYPE_TABLE)}


def datatype(name: str, field: str = "datatype") -> Datatype:
    """The table entry for a v2 name; InvalidInput naming `field` when there is none."""
    try:
        return BY_NAME[name]
    except (KeyError, TypeError):
        raise InvalidInput(
            f"{field}: unknown datatype {name!r} (expected one of {', '.join(BY_NAME)})"
        ) from None


def from_triton(name: str) -> Datatype:
    """The entry for a Triton TYPE_ name (also accepts the v2 name)."""
    found = BY_TRITON.get(name) or BY_NAME.get(name)
    if found is None:
        raise InvalidInput(f"unknown Triton data type {name!r}")
    return found


def from_onnx(element_type: int) -> Datatype | None:
    """The entry for an ONNX element type, or None for one v2 has no datatype for."""
    return BY_ONNX.get(element_type)


# MLflow's column types (mlflow.types.DataType names) -> v2 name. A column-based MLflow
# signature becomes one v2 tensor per column; datetime and the nested types (array, object,
# map) have no v2 datatype.
MLFLOW_COLUMN_TYPES: dict[str, str] = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
}


def from_mlflow_column(type_name: str) -> Datatype | None:
    """The entry for an MLflow column type (`long`, `double`, ...), or None for one v2 lacks."""
    name = MLFLOW_COLUMN_TYPES.get(type_name)
    return BY_NAME[name] if name else None


def v2_name_of(dtype: np.dtype) -> str | None:
    """The v2 datatype of a numpy dtype (str/bytes/object are BYTES), or None."""
    if dtype.kind in "OSU":
        return "BYTES"
    return _BY_NUMPY.get(dtype)


def bf16_to_bytes(array: np.ndarray) -> bytes:
    """float values -> little-endian bfloat16 (round to nearest even), 2 bytes each."""
    bits = np.ascontiguousarray(array, dtype=np.float32).view(np.uint32)
    rounded = bits + (np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1)))
    return (rounded >> np.uint32(16)).astype("<u2").tobytes()


def bf16_from_bytes(data: bytes | memoryview) -> np.ndarray:
    """little-endian bfloat16 bytes -> float32 values."""
    halves = np.frombuffer(data, dtype="<u2").astype(np.uint32)
    return (halves << np.uint32(16)).view(np.float32)


__all__ = [
    "BY_NAME",
    "BY_ONNX",
    "BY_TRITON",
    "BY_TRITON_ENUM",
    "DATATYPE_TABLE",
    "MLFLOW_COLUMN_TYPES",
    "V2_NAMES",
    "Datatype",
    "bf16_from_bytes",
    "bf16_to_bytes",
    "datatype",
    "from_mlflow_column",
    "from_onnx",
    "from_triton",
    "v2_name_of",
]
