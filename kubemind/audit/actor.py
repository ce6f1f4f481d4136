"""Who performs an administrative action: a JWT subject, the kubeconfig user, the OS user.

All identities known are kept in the record; `name` is the most specific one (a verified JWT's
subject, then the kubeconfig user of the current context, then the OS account).
"""

from __future__ import annotations

import base64
import getpass
import json
import os
from pathlib import Path
from typing import Any

import yaml


def kubeconfig_user(path: str | None = None) -> str | None:
    """The user of the current context of $KUBECONFIG (first file) or ~/.kube/config."""
    configured = path or (os.environ.get("KUBECONFIG") or "").split(os.pathsep)[0]
    file = Path(configured) if configured else Path.home() / ".kube" / "config"
    try:
        config = yaml.safe_load(file.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(config, dict):
        return None
    current = config.get("current-context")
    for context in config.get("contexts") or []:
        if isinstance(context, dict) and context.get("name") == current:
            user = (context.get("context") or {}).get("user")
            return str(user) if user else None
    return None


def jwt_subject(token: str) -> str | None:
    """The `sub` claim of a JWT. The signature is not checked here: the gateway that let the
    request in verified it (RequestAuthentication); this only names who it was."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    sub = claims.get("sub") if isinstance(claims, dict) else None
    return str(sub) if sub else None


def current_actor(explicit: str | None = None, kubeconfig: str | None = None) -> dict[str, Any]:
    """{"name", "via", "os_user", ...}: `explicit` (e.g. `jwt:alice` or a setting) wins."""
    os_user = getpass.getuser()
    actor: dict[str, Any] = {"os_user": os_user}
    kube = kubeconfig_user(kubeconfig)
    if kube:
        actor["kubeconfig_user"] = kube
    if explicit:
        via, sep, name = explicit.partition(":")
        actor.update(name=name if sep else explicit, via=via if sep else "explicit")
    elif kube:
        actor.update(name=kube, via="kubeconfig")
    else:
        actor.update(name=os_user, via="os")
    return actor
