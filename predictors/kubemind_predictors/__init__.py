"""kubemind predictors: one subpackage per backend, each runnable with `python -m`."""
