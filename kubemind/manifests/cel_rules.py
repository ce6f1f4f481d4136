"""CEL `x-kubernetes-validations` rules, evaluated the way the API server evaluates them.

cel-python implements standard CEL; the few Kubernetes CEL library functions the CRDs we ship
against use (`url().getScheme()`, `substring`, `isURL`, ...) are added here. A rule that needs
something we do not implement is skipped rather than guessed (logged at debug level); a live
cluster still enforces it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import celpy
from celpy import celtypes


class _Url(celtypes.StringType):
    """The value of Kubernetes' `url(string)`; methods below read its parts."""


def _url(value: Any) -> _Url:
    return _Url(str(value))


def _is_url(value: Any) -> celtypes.BoolType:
    parts = urlsplit(str(value))
    return celtypes.BoolType(bool(parts.scheme) and bool(parts.netloc or parts.path))


def _get_scheme(value: Any) -> celtypes.StringType:
    return celtypes.StringType(urlsplit(str(value)).scheme)


def _get_host(value: Any) -> celtypes.StringType:
    return celtypes.StringType(urlsplit(str(value)).netloc)


def _substring(value: Any, start: Any, end: Any = None) -> celtypes.StringType:
    text = str(value)
    return celtypes.StringType(text[int(start) : len(text) if end is None else int(end)])


def _lower_ascii(value: Any) -> celtypes.StringType:
    return celtypes.StringType(str(value).lower())


# Kubernetes CEL library functions (k8s.io/apiserver/pkg/cel/library) that cel-python lacks.
KUBERNETES_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "url": _url,
    "isURL": _is_url,
    "getScheme": _get_scheme,
    "getHost": _get_host,
    "substring": _substring,
    "lowerAscii": _lower_ascii,
}


class CelRuleError(Exception):
    """The rule could not be evaluated here (a function we lack, or an evaluation error)."""


@functools.lru_cache(maxsize=1024)
def _program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule), functions=KUBERNETES_FUNCTIONS)


def is_transition_rule(rule: str) -> bool:
    """Rules over `oldSelf` compare an update with the stored object: nothing to compare offline."""
    return "oldSelf" in rule


def evaluate(rule: str, value: Any) -> bool:
    """Whether `value` (plain JSON data) satisfies `rule`; raises CelRuleError if undecidable."""
    try:
        result = _program(rule).evaluate({"self": celpy.json_to_cel(value)})
    except Exception as exc:  # cel-python raises several unrelated types
        raise CelRuleError(f"{rule!r}: {exc}") from exc
    if isinstance(result, celpy.CELEvalError):
        raise CelRuleError(f"{rule!r}: {result}")
    return bool(result)
