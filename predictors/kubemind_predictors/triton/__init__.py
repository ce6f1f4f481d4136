"""Triton predictor: kubemind's models on a real Triton Inference Server, behind KServe's protocol.

Modules: `settings` (flags/env), `repository` (model repository), `launcher` (local tritonserver),
`client` (the one gRPC channel to Triton), `predictor` (the kserve.Model), `embeddings` (OpenAI
route for minilm), `metrics` (Triton's queue metrics), `runtime` (wiring), `export` (ONNX export,
run at install time).
"""
