"""Offline validation of kubemind's Kubernetes manifests.

No API server runs where kubemind is developed, so `kubemind validate` stands in for one:
it renders kustomize overlays (`rendering`), checks every object against the real CRD schemas
(`crd_catalog`, `structural`, `cel_rules`) or the built-in kinds' OpenAPI schemas (`core_kinds`),
then applies the admission rules the schemas miss (`admission`, `knative_config`,
`component_args`). Findings are `Problem`s (`problems`), printed by `reporting`.
"""
