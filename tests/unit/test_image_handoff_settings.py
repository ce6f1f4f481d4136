"""The image transformer's shared-memory hand-off setting: off unless asked, on for the pair
`kubemind serve` runs on one host, off in every overlay a cluster gets (the transformer and its
predictor are separate pods there), and the segment helper leaves nothing in /dev/shm."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubemind.errors import InvalidSettings
from kubemind.local.services import local_services
from kubemind.manifests.component_args import entry_point, expand_arg
from kubemind.protocol.shared_memory import SHM_DIR, Segment
from kubemind.settings import parse_settings
from kubemind_transformers.image.settings import ImageTransformerSettings

REPO = Path(__file__).resolve().parents[2]


def test_off_by_default_and_on_by_flag_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_settings(ImageTransformerSettings, []).predictor_shared_memory is False
    assert parse_settings(ImageTransformerSettings, ["--predictor_shared_memory", "true"]).predictor_shared_memory
    monkeypatch.setenv("KUBEMIND_IMAGE_PREDICTOR_SHARED_MEMORY", "true")
    monkeypatch.setenv("KUBEMIND_IMAGE_PREDICTOR_SHARED_MEMORY_SLOTS", "2")
    settings = parse_settings(ImageTransformerSettings, [])
    assert (settings.predictor_shared_memory, settings.predictor_shared_memory_slots) == (True, 2)


def test_zero_slots_is_refused_naming_the_flag() -> None:
    with pytest.raises(InvalidSettings, match="--predictor_shared_memory_slots"):
        parse_settings(ImageTransformerSettings, ["--predictor_shared_memory_slots", "0"])


def test_kubemind_serve_turns_it_on_for_its_same_host_pair() -> None:
    (image,) = [service for service in local_services() if service.module == "kubemind_transformers.image"]
    settings = parse_settings(ImageTransformerSettings, [*image.args, "--predictor_host", "127.0.0.1:1"])
    assert settings.predictor_shared_memory is True
    assert image.forwards_to == "triton"  # the predictor `serve` starts on this machine


@pytest.mark.parametrize("env", ["dev", "staging", "prod", "local"])
def test_every_overlay_leaves_it_off(env: str) -> None:
    objects = [o for o in yaml.safe_load_all((REPO / "inferenceservices" / "rendered" / f"{env}.yaml").read_text()) if o]
    transformers = [
        container
        for o in objects
        if o["kind"] == "InferenceService"
        for container in o["spec"].get("transformer", {}).get("containers", [])
        if (entry_point(container["image"], container.get("args") or [], container.get("command")) or ("",))[0]
        == "kubemind_transformers.image"
    ]
    assert transformers, f"no image transformer in {env}"
    for container in transformers:
        args = [expand_arg(str(arg), "cv-classifier", {}) for arg in container.get("args") or []]
        assert parse_settings(ImageTransformerSettings, args).predictor_shared_memory is False


def test_a_segment_is_created_exclusively_and_closed_without_a_trace() -> None:
    key = f"kubemind-unit-{id(object())}"
    segment = Segment(key, 4096)
    try:
        assert (SHM_DIR / key).stat().st_size == 4096
        with pytest.raises(FileExistsError):
            Segment(key, 4096)  # never another process's segment
        segment.memory[:3] = b"abc"
        assert (SHM_DIR / key).read_bytes()[:3] == b"abc"
    finally:
        segment.close()
    assert not (SHM_DIR / key).exists()
