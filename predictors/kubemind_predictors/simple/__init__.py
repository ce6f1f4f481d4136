"""The reference `simple` predictor (Triton's classic test model)."""

from kubemind_predictors.simple.model import SimpleModel
from kubemind_predictors.simple.settings import SimpleSettings

__all__ = ["SimpleModel", "SimpleSettings"]
