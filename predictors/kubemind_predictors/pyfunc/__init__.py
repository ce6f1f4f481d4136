"""The MLflow pyfunc predictor: a registered MLflow model loaded in-process with MLflow's own
loader and served over v2 (columnar or tensor inputs)."""

from kubemind_predictors.pyfunc.settings import PyfuncSettings

__all__ = ["PyfuncSettings"]
