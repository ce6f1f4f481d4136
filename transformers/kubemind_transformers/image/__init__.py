"""Image transformer: encoded images -> the classifier's tensor -> top-k ImageNet labels.

Modules: `settings`, `preprocessing` (decode/resize/normalise, off the event loop), `labels`
(ImageNet names, top-k), `transformer` (the kserve.Model), `__main__`.
"""
