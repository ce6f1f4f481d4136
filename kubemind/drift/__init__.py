"""Drift telemetry: reference profiles, the drift service (python -m kubemind.drift) and its report."""
