"""kubemind transformers: pre/post-processors in front of a predictor."""
