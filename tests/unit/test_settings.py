"""Settings: flags over env over defaults, KServe's flags accepted, errors name the flag."""

from __future__ import annotations

import pytest

from kubemind.errors import InvalidSettings
from kubemind.settings import ComponentSettings, build_parser, parse_settings
from kubemind_predictors.simple.settings import SimpleSettings


def test_flag_overrides_env_overrides_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEMIND_SIMPLE_HTTP_PORT", "9000")
    monkeypatch.setenv("KUBEMIND_SIMPLE_GRPC_PORT", "9001")
    settings = parse_settings(SimpleSettings, ["--http_port", "9100"])
    assert settings.http_port == 9100  # flag
    assert settings.grpc_port == 9001  # env
    assert settings.host == "0.0.0.0"  # default, like KServe


def test_each_component_has_its_own_env_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBEMIND_HTTP_PORT", "7000")
    assert parse_settings(SimpleSettings, []).http_port == 8080
    assert parse_settings(ComponentSettings, []).http_port == 7000


def test_kserve_only_flags_are_accepted() -> None:
    settings = parse_settings(SimpleSettings, ["--workers", "1", "--enable_docs_url", "false", "--model_name", "m"])
    assert settings.model_name == "m"


def test_list_flags_are_comma_separated() -> None:
    settings = parse_settings(SimpleSettings, ["--versions", "1,2,3", "--propagate_headers", "X-Request-Id,traceparent"])
    assert settings.versions == ["1", "2", "3"]
    assert settings.propagate_headers == ["X-Request-Id", "traceparent"]


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--http_port", "notaport"], "--http_port"),
        (["--http_port", "70000"], "--http_port"),
        (["--max_request_bytes", "0"], "--max_request_bytes"),
        (["--enable_grpc", "perhaps"], "--enable_grpc"),
    ],
)
def test_invalid_values_name_the_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(InvalidSettings, match=flag):
        parse_settings(SimpleSettings, argv)


def test_unknown_flag_is_rejected(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(SimpleSettings, ["--no_such_flag", "1"])
    assert "--no_such_flag" in capsys.readouterr().err


def test_help_lists_every_field_with_its_docstring() -> None:
    text = build_parser(SimpleSettings).format_help()
    for name, field in SimpleSettings.model_fields.items():
        assert f"--{name}" in text
        assert field.description, f"{name} has no docstring"
    assert "Address both the REST and the gRPC listener bind" in " ".join(text.split())
