"""Ties the checks together: paths -> objects -> problems."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from kubemind.manifests import rendering, yaml_limits
from kubemind.manifests.admission import check_admission
from kubemind.manifests.component_args import check_component_args
from kubemind.manifests.crd_catalog import load_catalog, missing_crd_dir
from kubemind.manifests.graph_routes import check_graph_routes
from kubemind.manifests.image_tags import check_image_tags
from kubemind.manifests.knative_config import check_knative_config
from kubemind.manifests.kserve_webhooks import check_runtime_priorities
from kubemind.manifests.problems import ManifestObject, Problem
from kubemind.manifests.references import Allowed, check_references
from kubemind.manifests.rollout_policies import check_rollout_policy
from kubemind.manifests.scaling_targets import check_scaling_targets
from kubemind.manifests.schemas import check_schema

RUNTIME_KINDS = ("ServingRuntime", "ClusterServingRuntime")


@dataclass
class ValidationResult:
    objects: list[ManifestObject] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def load_objects(
    paths: Iterable[Path], kustomize_timeout: float = rendering.KUSTOMIZE_TIMEOUT_SECONDS
) -> ValidationResult:
    """Objects from files and directories; a directory's kustomize overlays are built, and a
    directory without kustomizations is read file by file. Load failures become problems."""
    result = ValidationResult()
    for path in paths:
        for source, text in _sources(path, result, kustomize_timeout):
            try:
                result.objects.extend(rendering.parse_stream(text, source))
            except rendering.NotAnObject as exc:
                result.problems.append(Problem(source, "-", "-", str(exc)))
            except yaml.YAMLError as exc:
                result.problems.append(Problem(source, "-", "-", f"not valid YAML: {yaml_limits.describe_error(exc)}"))
    return result


def _read(file: Path, result: ValidationResult) -> Iterator[tuple[str, str]]:
    try:
        yield str(file), file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        result.problems.append(
            Problem(str(file), "-", "-", f"not UTF-8 text: byte 0x{exc.object[exc.start]:02x} at offset {exc.start}")
        )
    except OSError as exc:
        result.problems.append(Problem(str(file), "-", "-", f"cannot read: {exc.strerror or exc}"))


def _sources(path: Path, result: ValidationResult, kustomize_timeout: float) -> Iterator[tuple[str, str]]:
    if not path.exists():
        result.problems.append(Problem(str(path), "-", "-", "no such file or directory"))
        return
    if path.is_file():
        yield from _read(path, result)
        return
    roots = [path] if rendering.is_kustomization(path) else rendering.kustomize_roots(path)
    if not roots:
        for file in rendering.plain_yaml_files(path):
            yield from _read(file, result)
        return
    for root in roots:
        try:
            yield f"{root}{rendering.BUILD_SUFFIX}", rendering.render(root, kustomize_timeout)
        except rendering.RenderError as exc:
            result.problems.append(Problem(str(root), "-", "-", str(exc)))


def check_envelope(obj: ManifestObject) -> list[Problem]:
    """What every object needs before any other check can read it: string apiVersion and kind,
    a mapping for metadata, and no `spec: null` (which the API server would store as no spec)."""
    problems = []
    for key in ("apiVersion", "kind"):
        value = obj.body.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(Problem.at(obj, (key,), f"must be a string, got {type(value).__name__} {value!r}"))
    metadata = obj.body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        problems.append(Problem.at(obj, ("metadata",), f"must be a mapping, got {type(metadata).__name__} {metadata!r}"))
    if "spec" in obj.body and obj.body["spec"] is None:
        problems.append(Problem.at(obj, ("spec",), "must be a mapping, got null"))
    return problems


def check_objects(
    objects: list[ManifestObject],
    crd_dir: Path | None,
    unchecked_kinds: frozenset[str] = frozenset(),
    allowed_refs: Iterable[Allowed] = (),
) -> list[Problem]:
    """Every problem the schema, admission and reference checks find in these objects.

    `unchecked_kinds` ("group/Kind") names kinds whose schema we do not have and accept unseen.
    """
    catalog = load_catalog(crd_dir)
    # Runtimes an InferenceService may name, per source: an overlay is deployed as a whole.
    runtimes: dict[str, dict[str, dict]] = {}
    for obj in objects:
        if obj.kind in RUNTIME_KINDS:
            runtimes.setdefault(obj.source, {})[obj.name] = obj.body
    problems: list[Problem] = []
    well_formed = []
    for obj in objects:
        envelope = check_envelope(obj)
        problems.extend(envelope)
        if not envelope:
            well_formed.append(obj)
    objects = well_formed
    for obj in objects:
        if f"{obj.group}/{obj.kind}" not in unchecked_kinds:
            problems.extend(check_schema(obj, catalog))
        problems.extend(check_admission(obj))
        if rendering.is_build(obj.source):
            problems.extend(check_image_tags(obj))
        problems.extend(check_knative_config(obj, crd_dir))
        problems.extend(check_component_args(obj, runtimes.get(obj.source, {})))
        problems.extend(check_graph_routes(obj))
        problems.extend(check_rollout_policy(obj))
    problems.extend(check_runtime_priorities(objects))
    problems.extend(check_references(objects, allowed_refs))
    problems.extend(check_scaling_targets(objects))
    return problems


def validate_paths(
    paths: Iterable[Path],
    crd_dir: Path | None,
    unchecked_kinds: frozenset[str] = frozenset(),
    allowed_refs: Iterable[Allowed] = (),
    kustomize_timeout: float = rendering.KUSTOMIZE_TIMEOUT_SECONDS,
) -> ValidationResult:
    result = load_objects(paths, kustomize_timeout)
    missing = missing_crd_dir(crd_dir) if crd_dir is not None else None
    if missing:
        # Checking against no schemas would report every custom object as unknown: say the one
        # thing that is wrong instead.
        result.problems.append(Problem(str(crd_dir), "-", "-", f"{missing} (--crds, $KUBEMIND_CRDS)"))
        return result
    result.problems.extend(check_objects(result.objects, crd_dir, unchecked_kinds, allowed_refs))
    return result
