"""The objects `kubemind up` runs, as the Kubernetes API keeps them: versioned and watchable.

Two writers: the overlay (each render that passes `kubemind validate` is applied like
`kubectl apply -k`: changed objects replace theirs, objects gone from the overlay are deleted)
and the local Kubernetes API (kubectl, the `kubernetes` client). The runner reconciles the
processes and the gateway from whatever the store holds, on its own thread, whenever
`generation` moves; it writes only the status back. Every change gets the next
resourceVersion and an event that watchers receive in order.

Bodies are never changed in place: a write stores a new dict, so a snapshot stays as it was.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kubemind.local.up.kube_resources import served_resources
from kubemind.manifests.problems import ManifestObject

# Events kept for watches that resume from a resourceVersion; older ones get 410 Expired.
HISTORY = 2000
API_SOURCE = "the Kubernetes API of kubemind up"

ObjectKey = tuple[str, str, str, str]
"""(group, kind, namespace, name); namespace is "" for cluster-scoped objects."""


@dataclass(frozen=True)
class Event:
    resource_version: int
    type: str
    """ADDED, MODIFIED or DELETED."""
    object: dict[str, Any]


def now_timestamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _namespaced(group: str, kind: str) -> bool | None:
    """True/False for the kinds the API serves; None for others (their namespace is kept as is)."""
    served = next((r for r in served_resources() if r.group == group and r.kind == kind), None)
    return served.namespaced if served else None


def object_key(body: dict[str, Any]) -> ObjectKey:
    group = str(body.get("apiVersion", "")).rpartition("/")[0]
    kind = str(body.get("kind", ""))
    metadata = body.get("metadata") or {}
    namespace = str(metadata.get("namespace") or "")
    if _namespaced(group, kind) and not namespace:
        namespace = "default"
    elif _namespaced(group, kind) is False:
        namespace = ""
    return group, kind, namespace, str(metadata.get("name", ""))


class ObjectStore:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._objects: dict[ObjectKey, ManifestObject] = {}
        self._rendered: dict[ObjectKey, dict[str, Any]] = {}
        self._history: deque[Event] = deque(maxlen=HISTORY)
        self._resource_version = 0
        self._generation = 0
        self._closed = False
        self.write_lock = threading.RLock()
        """Held by a writer from reading the current object to storing its change (with the
        validation in between), so two writers cannot both change the same version."""

    # -- reads -------------------------------------------------------------------------------
    @property
    def resource_version(self) -> int:
        with self._cond:
            return self._resource_version

    @property
    def generation(self) -> int:
        """Bumped by every change the runner must reconcile (not by status writes)."""
        with self._cond:
            return self._generation

    def objects(self) -> list[ManifestObject]:
        with self._cond:
            return list(self._objects.values())

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        with self._cond:
            found = self._objects.get(key)
            return found.body if found else None

    def list_objects(self, group: str, kind: str, namespace: str | None) -> tuple[list[dict[str, Any]], int]:
        with self._cond:
            items = [obj.body for key, obj in sorted(self._objects.items())
                     if key[0] == group and key[1] == kind and (namespace is None or key[2] == namespace)]
            return items, self._resource_version

    # -- writes ------------------------------------------------------------------------------
    def sync_rendered(self, objects: Iterable[ManifestObject]) -> None:
        """Apply a render of the overlay: what changed since the last render replaces the
        stored object (the API's edits to it included), what left the overlay is deleted."""
        with self.write_lock:
            rendered = {object_key(obj.body): obj for obj in objects}
            for key, obj in rendered.items():
                if self._rendered.get(key) != obj.body:
                    self.put(obj.body, obj.source)
            for key in [key for key in self._rendered if key not in rendered]:
                self.delete(key)
            self._rendered = {key: obj.body for key, obj in rendered.items()}

    def put(self, body: dict[str, Any], source: str = API_SOURCE) -> dict[str, Any]:
        """Create or replace an object's spec and metadata; the stored status stays."""
        key = object_key(body)
        with self._cond:
            current = self._objects.get(key)
            stored = copy.deepcopy(body)
            metadata = stored.setdefault("metadata", {})
            if key[2]:
                metadata["namespace"] = key[2]
            old = current.body if current else {}
            old_metadata = old.get("metadata", {})
            metadata["uid"] = old_metadata.get("uid") or str(uuid.uuid4())
            metadata["creationTimestamp"] = old_metadata.get("creationTimestamp") or now_timestamp()
            generation = int(old_metadata.get("generation", 0))
            changed_spec = not current or _without_meta(old) != _without_meta(stored)
            metadata["generation"] = generation + 1 if changed_spec else generation
            for field in ("resourceVersion", "managedFields", "selfLink"):
                metadata.pop(field, None)
            stored.pop("status", None)
            if "status" in old:
                stored["status"] = old["status"]
            self._store(key, ManifestObject(current.source if current and source == API_SOURCE else source, stored),
                        "MODIFIED" if current else "ADDED", reconcile=True)
            return self._objects[key].body

    def set_status(self, key: ObjectKey, status: dict[str, Any]) -> dict[str, Any] | None:
        """The status subresource; no event when nothing changed."""
        with self._cond:
            current = self._objects.get(key)
            if current is None or current.body.get("status") == status:
                return current.body if current else None
            body = {**current.body, "status": copy.deepcopy(status),
                    "metadata": {k: v for k, v in current.body["metadata"].items() if k != "resourceVersion"}}
            self._store(key, ManifestObject(current.source, body), "MODIFIED", reconcile=False)
            return self._objects[key].body

    def delete(self, key: ObjectKey) -> dict[str, Any] | None:
        with self._cond:
            current = self._objects.pop(key, None)
            if current is None:
                return None
            self._resource_version += 1
            self._generation += 1
            body = {**current.body, "metadata": {**current.body["metadata"],
                                                 "resourceVersion": str(self._resource_version)}}
            self._history.append(Event(self._resource_version, "DELETED", body))
            self._cond.notify_all()
            return body

    def _store(self, key: ObjectKey, obj: ManifestObject, kind: str, reconcile: bool) -> None:
        self._resource_version += 1
        obj.body["metadata"]["resourceVersion"] = str(self._resource_version)
        self._objects[key] = obj
        if reconcile:
            self._generation += 1
        self._history.append(Event(self._resource_version, kind, obj.body))
        self._cond.notify_all()

    # -- watches -----------------------------------------------------------------------------
    def expired(self, resource_version: int) -> bool:
        """Whether events after `resource_version` are no longer all kept."""
        with self._cond:
            oldest = self._history[0].resource_version if self._history else self._resource_version + 1
            return resource_version < oldest - 1 and resource_version < self._resource_version

    def events_after(self, resource_version: int, timeout: float) -> list[Event]:
        """The events after `resource_version`, waiting up to `timeout` for the first one."""
        with self._cond:
            self._cond.wait_for(lambda: self._closed or self._resource_version > resource_version, timeout)
            return [event for event in self._history if event.resource_version > resource_version]

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Ends every watch."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()


def _without_meta(body: dict[str, Any]) -> dict[str, Any]:
    """What a generation counts: everything but metadata and status."""
    return {key: value for key, value in body.items() if key not in ("metadata", "status")}
