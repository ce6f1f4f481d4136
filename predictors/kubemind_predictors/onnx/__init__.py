"""The ONNX Runtime predictor: one ONNX model in-process, with dynamic batching."""

from kubemind_predictors.onnx.settings import OnnxSettings

__all__ = ["OnnxSettings"]
