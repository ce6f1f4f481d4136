"""Shared start-up code for the Python-backend models: copied next to each model.py."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

# The launcher points this at a numpy<2 side environment: the backend stub's tensor bridge misreads
# numpy 2 arrays, and the stub's embedded interpreter would otherwise see the base Python's packages.
_SITE_PACKAGES = os.environ.get("KUBEMIND_TRITON_SITE_PACKAGES")
if _SITE_PACKAGES and _SITE_PACKAGES not in sys.path:
    sys.path.insert(0, _SITE_PACKAGES)


def version_dir(args: dict[str, Any]) -> Path:
    """The folder of the model version being loaded (where its artifacts lie)."""
    return Path(args["model_repository"]) / args["model_version"]


def parameter(args: dict[str, Any], key: str, default: str) -> str:
    """A string parameter from config.pbtxt's `parameters` block."""
    parameters = json.loads(args["model_config"]).get("parameters", {})
    return str(parameters.get(key, {}).get("string_value", default))


def onnx_session(path: Path, threads: int) -> Any:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
