"""`kubemind models demo`: the models the `local` overlay serves, registered in this machine's
registry (the one `kubemind models` uses: $MLFLOW_TRACKING_URI or the embedded store under
$KUBEMIND_HOME), so `kubemind up` of that overlay serves every service from the registry, as a
cluster does, and `make serve` needs nothing else.

The overlay pins version 1 of each (inferenceservices/overlays/local/demo-models.yaml): the
version a registry that has never seen the name gives. A second run registers nothing. A name
whose version 1 is another kind of model (a registry of your own) is refused, naming it:
pin the overlay to your versions with `kubemind models pin --env local` instead.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubemind.errors import InvalidInput

DEMO_VERSION = "1"


@dataclass(frozen=True)
class DemoModel:
    name: str
    """The registered name the base InferenceServices use (their storageUri)."""
    flavor: str
    what: str
    build: Callable[[Path], Path]
    """Writes (or finds) the folder to register; its argument is a scratch folder."""


def _smollm2(scratch: Path) -> Path:
    from kubemind_predictors.vllm.convert import (
        convert_gguf,
        default_smollm2_dir,
        smollm2_gguf_path,
    )

    return convert_gguf(smollm2_gguf_path(), default_smollm2_dir())


def _triton_repository(model: str) -> Callable[[Path], Path]:
    def build(scratch: Path) -> Path:
        from kubemind_predictors.triton.launcher import TritonInstall
        from kubemind_predictors.triton.repository import build_repository

        # Copies, not links: the registry uploads the files, a cluster's Triton reads them.
        return build_repository(scratch / model, [model], TritonInstall.default().onnx_dir, copy_artifacts=True)

    return build


def _docs_index(scratch: Path) -> Path:
    """The Python language reference, indexed with minilm (the index `kubemind serve`'s RAG
    builds; a finished one is reused, an interrupted one resumed)."""
    from kubemind_transformers.rag.cli import index
    from kubemind_transformers.rag.settings import IndexSettings

    settings = IndexSettings()
    asyncio.run(index(settings))
    return Path(settings.index_dir)


DEMO_MODELS = (
    DemoModel("smollm2-chat", "hf-llm", "SmolLM2-135M-Instruct (llm-chat, rag)", _smollm2),
    DemoModel("efficientnet-lite0", "triton-repo", "EfficientNet-Lite0 on Triton (cv-classifier)",
              _triton_repository("efficientnet_lite0")),
    DemoModel("minilm", "triton-repo", "all-MiniLM-L6-v2 on Triton (embedder)", _triton_repository("minilm")),
    DemoModel("docs-index", "rag-index", "the Python reference, indexed with minilm (rag)", _docs_index),
)


def register_demo_models(registry: Any, report: Callable[[str], None] = print) -> list[str]:
    """Register each demo model the registry lacks; returns the pinned URIs, in DEMO_MODELS order."""
    from kubemind_registry.errors import ModelVersionNotFound
    from kubemind_registry.register import register_model
    from kubemind_registry.resolve import resolve

    uris = []
    for model in DEMO_MODELS:
        uri = f"models:/{model.name}/{DEMO_VERSION}"
        try:
            existing = resolve(registry, uri)
        except ModelVersionNotFound:
            existing = None
        if existing is not None:
            if existing.flavor != model.flavor:
                raise InvalidInput(
                    f"{uri} in this registry is a {existing.flavor!r} model, not the demo {model.what}"
                    f" ({model.flavor!r}); the local overlay serves version {DEMO_VERSION}: use another"
                    " KUBEMIND_HOME (or MLFLOW_TRACKING_URI), or pin your own versions with"
                    " `kubemind models pin --env local`")
            report(f"{uri}: registered already ({model.what})")
            uris.append(uri)
            continue
        report(f"{uri}: preparing {model.what} ...")
        scratch = Path(tempfile.mkdtemp(prefix=f"kubemind-demo-{model.name}-"))
        try:
            ref = register_model(registry, model.name, model.build(scratch), model.flavor)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        if ref.version != DEMO_VERSION:
            raise InvalidInput(
                f"{model.name} was registered as version {ref.version}, not {DEMO_VERSION}: the registry held"
                f" versions of it already; pin them with `kubemind models pin --env local`")
        report(f"{ref.uri}: registered ({model.what}, digest {ref.digest[:19]})")
        uris.append(ref.uri)
    return uris
