"""vLLM predictor: OpenAI-compatible and Open Inference Protocol LLM serving on vLLM's AsyncLLM.

Importing this package does not import vLLM: only `kubemind_predictors.vllm.backend` does, and
only when an engine is built. `settings` is safe to import anywhere (manifest validation, CLI).
"""
