"""Release control: a RolloutPolicy (kubemind.io/v1alpha1) takes a new InferenceService revision
through an optional shadow phase and canary steps, promoting or rolling back on PromQL gates,
failing closed, with every step in the audit log."""
