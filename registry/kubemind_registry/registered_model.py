"""A KubemindModel whose signature and version come from the registry, via the model folder.

A predictor serving a folder that `python -m kubemind_registry.initializer` prepared subclasses
`RegisteredModel` instead of `KubemindModel`: its v2 metadata then reports the registered
signature, and its served version is the MLflow version, so `/v2/models/{name}/versions/{v}`
names exactly what was pinned. Only the folder is read, never the registry (design
principle 7), so this module must not import MLflow.
"""

from __future__ import annotations

from pathlib import Path

from kubemind.model import KubemindModel, TensorSpec
from kubemind_registry.served import ServedModel, TensorSignature, read_served_model


def tensor_spec(tensor: TensorSignature) -> TensorSpec:
    return TensorSpec(tensor.name, tensor.datatype, tensor.shape)


class RegisteredModel(KubemindModel):
    """Base class for predictors of registry-initialized folders; subclasses load and predict."""

    def __init__(self, name: str, model_dir: str | Path, *, max_batch_size: int = 0):
        # Read at construction, not in load(): KubemindModel's signature is fixed when it is
        # built, and the metadata file is a few hundred bytes. The weights wait for load().
        self.model_dir = Path(model_dir)
        self.served: ServedModel = read_served_model(self.model_dir)
        super().__init__(
            name,
            versions=(self.served.version,),
            inputs=[tensor_spec(t) for t in self.served.signature.inputs],
            outputs=[tensor_spec(t) for t in self.served.signature.outputs],
            max_batch_size=max_batch_size,
        )
