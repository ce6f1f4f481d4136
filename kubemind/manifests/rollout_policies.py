"""`kubemind validate` of RolloutPolicy objects beyond their CRD schema: gate templates with
unknown placeholders or PromQL that does not parse (promtool), thresholds a metric lacks."""

from __future__ import annotations

from collections.abc import Iterator

from kubemind.manifests.problems import ManifestObject, Problem


def check_rollout_policy(obj: ManifestObject) -> Iterator[Problem]:
    from kubemind.manifests.schemas import check_schema
    from kubemind.release.policy import GROUP, KIND, _catalog, gate_problems

    if obj.group != GROUP or obj.kind != KIND:
        return
    if any(True for _ in check_schema(obj, _catalog())):
        return  # the schema check reports these; the gates are read only from a valid body
    for path, message in gate_problems(obj.body):
        yield Problem(obj.source, obj.label, path, message)
