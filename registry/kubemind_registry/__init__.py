"""kubemind registry: MLflow register, resolve, pin, and the models:/ storage initializer."""
