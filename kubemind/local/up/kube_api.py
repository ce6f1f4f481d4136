"""The Kubernetes API of `kubemind up`: the objects it runs, over the Kubernetes REST protocol.

Principle 16: where Kubernetes cannot run, the local runner answers its wire protocol, so
`kubectl` and the `kubernetes` package drive the local runner as they drive a cluster. Served
on 127.0.0.1 (plain HTTP, no authentication: loopback only), with a kubeconfig written for it:

- discovery: /version, /api, /apis, /apis/serving.kserve.io[/VERSION], the OpenAPI v3 index
  kubectl reads to learn that the server validates fields itself;
- every served serving.kserve.io kind: GET, LIST (label and field selectors, tables for kubectl)
  and WATCH (`?watch=1`, chunked JSON events, resuming from a resourceVersion);
- InferenceServices also: POST (kubectl apply of a new one), PUT, PATCH (JSON merge patch and
  JSON patch; strategic merge is 415, as for any custom resource on a real API server), DELETE,
  and the status subresource (GET, PUT, PATCH).

A write passes the same checks as `kubemind validate` (422 naming the field otherwise), then
lands in the ObjectStore, from which the runner reconciles processes and gateway: the one way
a change is applied, whether it comes from an overlay edit or from here. Anything else is a
Kubernetes Status error (404, 405, 409, 415, 422), never a hang.
"""

from __future__ import annotations

import copy
import functools
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from kubemind.errors import KubemindError
from kubemind.local.up import kube_resources as resources
from kubemind.local.up.activator import read_request_body
from kubemind.local.up.background_http import BackgroundHttpServer
from kubemind.local.up.kube_objects import API_SOURCE, ObjectKey, ObjectStore, object_key
from kubemind.local.up.kube_patch import PatchError, json_patch, merge_patch
from kubemind.local.up.kube_resources import GROUP, Resource
from kubemind.manifests.problems import ManifestObject, Problem

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
ACCEPTED_PATCHES = (JSON_PATCH, MERGE_PATCH)
DEFAULT_WATCH_SECONDS = 1800
# A watch wakes this often to notice a closed store or a gone client.
WATCH_POLL_SECONDS = 1.0
KUBECONFIG_CONTEXT = "kubemind-up"

Check = Callable[[list[ManifestObject]], list[Problem]]
"""The objects after a change -> what `kubemind validate` finds in them."""


class ApiStatusError(KubemindError):
    """A request the local Kubernetes API refuses; answered as a Kubernetes `Status` object."""

    status = HTTPStatus.BAD_REQUEST

    def __init__(self, message: str, code: HTTPStatus = HTTPStatus.BAD_REQUEST, reason: str = "BadRequest",
                 details: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = code
        self.reason = reason
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        status = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": self.message, "reason": self.reason, "code": int(self.status)}
        if self.details:
            status["details"] = self.details
        return status


def _not_found(resource: Resource, name: str) -> ApiStatusError:
    return ApiStatusError(f'{resource.plural}.{resource.group} "{name}" not found', HTTPStatus.NOT_FOUND,
                          "NotFound", {"name": name, "group": resource.group, "kind": resource.plural})


def _no_route() -> ApiStatusError:
    return ApiStatusError("the server could not find the requested resource", HTTPStatus.NOT_FOUND, "NotFound")


def _not_allowed(what: str) -> ApiStatusError:
    return ApiStatusError(f"the server does not allow this method on the requested resource ({what})",
                          HTTPStatus.METHOD_NOT_ALLOWED, "MethodNotAllowed")


@dataclass(frozen=True)
class Target:
    resource: Resource
    namespace: str | None
    """None: every namespace (a namespaced kind listed cluster-wide) or a cluster-scoped kind."""
    name: str | None = None
    subresource: str | None = None

    def key(self) -> ObjectKey:
        assert self.name is not None
        return self.resource.group, self.resource.kind, self.namespace or "", self.name


def parse_target(path: str) -> Target:
    """/apis/serving.kserve.io/VERSION[/namespaces/NS]/PLURAL[/NAME[/status]]"""
    parts = [part for part in path.split("/") if part]
    if len(parts) < 4 or parts[0] != "apis" or parts[1] not in resources.GROUPS:
        raise _no_route()
    group, version, rest = parts[1], parts[2], parts[3:]
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    resource = resources.find_resource(version, rest[0], group)
    if resource is None or len(rest) > 3 or (namespace is not None and not resource.namespaced):
        raise _no_route()
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if subresource is not None and (subresource != "status" or not resource.has_status):
        raise _no_route()
    if name is not None and resource.namespaced and namespace is None:
        raise _no_route()
    return Target(resource, namespace, name, subresource)


# -- selectors ----------------------------------------------------------------------------------
Requirement = tuple[str, str, str]
"""(key, operator, value) with operator one of =, !=, exists, !exists."""


def parse_selector(text: str, what: str) -> list[Requirement]:
    requirements: list[Requirement] = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        if " in " in part or " notin " in part or "(" in part:
            raise ApiStatusError(f"{what} {text!r}: set-based requirements are not supported here;"
                                 " use key=value, key!=value, key or !key")
        if "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append((key.strip(), "!=", value.strip()))
        elif "=" in part:
            key, value = part.replace("==", "=").split("=", 1)
            requirements.append((key.strip(), "=", value.strip()))
        elif part.startswith("!"):
            requirements.append((part[1:].strip(), "!exists", ""))
        else:
            requirements.append((part, "exists", ""))
    return requirements


def _fields(obj: dict[str, Any]) -> dict[str, str]:
    metadata = obj.get("metadata", {})
    return {"metadata.name": str(metadata.get("name", "")), "metadata.namespace": str(metadata.get("namespace", ""))}


def matches(obj: dict[str, Any], labels: list[Requirement], fields: list[Requirement]) -> bool:
    for values, requirements in ((obj.get("metadata", {}).get("labels") or {}, labels), (_fields(obj), fields)):
        for key, operator, value in requirements:
            present = key in values
            if (operator == "exists" and not present) or (operator == "!exists" and present):
                return False
            if (operator == "=" and values.get(key) != value) or (operator == "!=" and values.get(key) == value):
                return False
    return True


def _check_field_selector(fields: list[Requirement]) -> None:
    for key, operator, _ in fields:
        if key not in ("metadata.name", "metadata.namespace") or operator not in ("=", "!="):
            raise ApiStatusError(f'field label not supported: "{key}" (metadata.name and metadata.namespace'
                                 " with = or != are)")


# -- writes ---------------------------------------------------------------------------------------
def _for_validation(body: dict[str, Any]) -> dict[str, Any]:
    """What `kubemind validate` sees of a stored object: the manifest, without server fields."""
    metadata = body.get("metadata") or {}
    kept = {k: metadata[k] for k in ("name", "namespace", "labels", "annotations") if k in metadata}
    return {**{k: v for k, v in body.items() if k not in ("metadata", "status")}, "metadata": kept}


def _same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return _for_validation(a) == _for_validation(b)


class KubeApi:
    """The API server thread; `stop` ends its watches and closes the port."""

    def __init__(self, store: ObjectStore, check: Check, port: int = 0, host: str = "127.0.0.1",
                 access_log: Path | None = None):
        self.store = store
        self.check = check
        self.access_log = access_log.open("a", buffering=1) if access_log else None
        handler = type("Handler", (ApiHandler,), {"api": self})
        self._server = BackgroundHttpServer(handler, "kube-api", host, port)
        self.host = host
        self.port = self._server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self.store.close()
        self._server.stop()
        if self.access_log:
            self.access_log.close()

    # -- the write path ---------------------------------------------------------------------
    def commit(self, target: Target, candidate: dict[str, Any], dry_run: bool) -> dict[str, Any]:
        """Validate the object as it would be after the write (the store's write lock held),
        then store it; the runner reconciles from there."""
        label = f"{target.resource.kind}/{candidate['metadata']['name']}"
        objects = [ManifestObject(API_SOURCE, _for_validation(obj.body)) for obj in self.store.objects()
                   if object_key(obj.body) != target.key()]
        objects.append(ManifestObject(API_SOURCE, _for_validation(candidate)))
        # Other objects passed when they were stored: report what this object brings.
        problems = [p for p in self.check(objects) if p.object == label]
        if problems:
            name = candidate["metadata"]["name"]
            causes = [{"reason": "FieldValueInvalid", "message": p.message, "field": p.path} for p in problems]
            raise ApiStatusError(
                f'{target.resource.kind}.{target.resource.group} "{name}" is invalid: '
                + "; ".join(f"{p.path}: Invalid value: {p.message}" for p in problems),
                HTTPStatus.UNPROCESSABLE_ENTITY, "Invalid",
                {"name": name, "group": target.resource.group, "kind": target.resource.kind, "causes": causes})
        if dry_run:
            return candidate
        return self.store.put(candidate)


class ApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    api: KubeApi

    def log_message(self, format: str, *args: object) -> None:
        if self.api.access_log and not self.api.access_log.closed:
            self.api.access_log.write(f"{self.log_date_time_string()} {format % args}\n")

    def _dispatch(self) -> None:
        try:
            url = urlsplit(self.path)
            query = {key: values[-1] for key, values in parse_qs(url.query).items()}
            body = read_request_body(self)  # DELETE too: kubectl sends DeleteOptions
            self._route(url.path.rstrip("/") or "/", query, body)
        except ApiStatusError as exc:
            self._json(exc.status, exc.body())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:
            error = ApiStatusError(f"internal error: {exc!r}", HTTPStatus.INTERNAL_SERVER_ERROR, "InternalError")
            self._json(error.status, error.body())

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    # -- routing ----------------------------------------------------------------------------
    def _route(self, path: str, query: dict[str, str], body: bytes) -> None:
        documents: dict[str, Callable[[], dict[str, Any] | None]] = {
            "/version": lambda: dict(resources.KUBERNETES_VERSION),
            "/api": lambda: resources.api_versions(f"{self.api.host}:{self.api.port}"),
            "/api/v1": resources.core_resources,
            "/api/v1/namespaces": self._namespaces,
            "/apis": resources.api_group_list,
            f"/apis/{GROUP}": resources.api_group,
            "/openapi/v3": resources.openapi_v3_root,
        }
        for group in resources.GROUPS[1:]:
            documents[f"/apis/{group}"] = lambda g=group: resources.api_group(g)  # type: ignore[misc]
            for version in resources.versions(group):
                documents[f"/apis/{group}/{version}"] = functools.partial(resources.api_resource_list, version, group)
        for version in resources.versions():
            documents[f"/apis/{GROUP}/{version}"] = lambda v=version: resources.api_resource_list(v)  # type: ignore[misc]
            documents[f"/openapi/v3/apis/{GROUP}/{version}"] = lambda v=version: resources.openapi_v3_group(v)  # type: ignore[misc]
        if path in ("/healthz", "/livez", "/readyz"):
            self._send(HTTPStatus.OK, b"ok", "text/plain")
            return
        if path in documents:
            if self.command != "GET":
                raise _not_allowed(f"{self.command} {path}")
            document = documents[path]()
            if document is None:
                raise _no_route()
            self._json(HTTPStatus.OK, document)
            return
        if path.startswith("/api/v1/namespaces/") and path.count("/") == 4:
            if self.command != "GET":
                raise _not_allowed(f"{self.command} of a namespace")
            name = path.rsplit("/", 1)[1]
            found = next((ns for ns in self._namespaces()["items"] if ns["metadata"]["name"] == name), None)
            if found is None:
                raise ApiStatusError(f'namespaces "{name}" not found', HTTPStatus.NOT_FOUND, "NotFound",
                                     {"name": name, "kind": "namespaces"})
            self._json(HTTPStatus.OK, found)
            return
        target = parse_target(path)
        handler = {
            "GET": self._get, "POST": self._create, "PUT": self._replace, "PATCH": self._patch, "DELETE": self._delete,
        }.get(self.command)
        if handler is None:
            raise _not_allowed(self.command)
        if self.command != "GET" and not target.resource.writable:
            raise _not_allowed(f"{target.resource.plural} are read-only here: they come from the overlay")
        handler(target, query, body)

    # -- reads -------------------------------------------------------------------------------
    def _namespaces(self) -> dict[str, Any]:
        """The overlay's Namespace objects and every namespace an object lives in."""
        created: dict[str, str] = {}
        for obj in self.api.store.objects():
            key = object_key(obj.body)
            name = key[3] if (key[0], key[1]) == ("", "Namespace") else key[2]
            if name:
                created.setdefault(name, str(obj.body.get("metadata", {}).get("creationTimestamp", "")))
        items = [resources.namespace(name, created[name]) for name in sorted(created)]
        return {"apiVersion": "v1", "kind": "NamespaceList",
                "metadata": {"resourceVersion": str(self.api.store.resource_version)}, "items": items}

    def _get(self, target: Target, query: dict[str, str], _: bytes) -> None:
        labels = parse_selector(query.get("labelSelector", ""), "labelSelector")
        fields = parse_selector(query.get("fieldSelector", ""), "fieldSelector")
        _check_field_selector(fields)
        if target.name is None:
            if query.get("watch", "").lower() in ("1", "true"):
                self._watch(target, query, labels, fields)
                return
            items, version = self.api.store.list_objects(target.resource.group, target.resource.kind, target.namespace)
            items = [self._as_version(target, item) for item in items if matches(item, labels, fields)]
            if self._wants_table():
                self._json(HTTPStatus.OK, resources.table(target.resource, items, str(version)))
                return
            self._json(HTTPStatus.OK, {"apiVersion": target.resource.api_version,
                                       "kind": f"{target.resource.kind}List",
                                       "metadata": {"resourceVersion": str(version)}, "items": items})
            return
        found = self._current(target)
        if self._wants_table():
            self._json(HTTPStatus.OK, resources.table(target.resource, [found], found["metadata"]["resourceVersion"]))
            return
        self._json(HTTPStatus.OK, found)

    def _current(self, target: Target) -> dict[str, Any]:
        found = self.api.store.get(target.key())
        if found is None:
            assert target.name is not None
            raise _not_found(target.resource, target.name)
        return self._as_version(target, found)

    @staticmethod
    def _as_version(target: Target, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, "apiVersion": target.resource.api_version}

    def _wants_table(self) -> bool:
        return "as=Table" in self.headers.get("accept", "")

    def _watch(self, target: Target, query: dict[str, str], labels: list[Requirement],
               fields: list[Requirement]) -> None:
        store = self.api.store
        as_table = self._wants_table()
        deadline = time.monotonic() + float(query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS)
        requested = query.get("resourceVersion", "")
        try:
            since = int(requested or 0)
        except ValueError as exc:
            raise ApiStatusError(f"resourceVersion {requested!r} is not one this server gave") from exc
        self.send_response(HTTPStatus.OK)
        self.send_header("content-type", "application/json")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.close_connection = True

        def send(kind: str, obj: dict[str, Any]) -> None:
            if as_table and kind != "ERROR":
                obj = resources.table(target.resource, [obj], obj["metadata"]["resourceVersion"])
            data = json.dumps({"type": kind, "object": obj}).encode() + b"\n"
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

        try:
            if since == 0:  # no resourceVersion: the current objects first, as ADDED
                items, since = store.list_objects(target.resource.group, target.resource.kind, target.namespace)
                for item in items:
                    if matches(item, labels, fields):
                        send("ADDED", self._as_version(target, item))
            elif store.expired(since):
                send("ERROR", ApiStatusError(f"too old resource version: {since}", HTTPStatus.GONE,
                                             "Expired").body())
                return
            while not store.closed and time.monotonic() < deadline:
                for event in store.events_after(since, min(WATCH_POLL_SECONDS, max(0.0, deadline - time.monotonic()))):
                    since = event.resource_version
                    obj = event.object
                    group, kind, namespace, _ = object_key(obj)
                    if (group, kind) != (target.resource.group, target.resource.kind):
                        continue
                    if target.namespace is not None and namespace != target.namespace:
                        continue
                    if matches(obj, labels, fields):
                        send(event.type, self._as_version(target, obj))
        finally:
            try:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
            except OSError:
                pass

    # -- writes ------------------------------------------------------------------------------
    @staticmethod
    def _decode(body: bytes) -> Any:
        try:
            return json.loads(body) if body.strip().startswith((b"{", b"[")) else yaml.safe_load(body)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiStatusError(f"the request body is not JSON or YAML: {exc}") from exc

    @staticmethod
    def _dry_run(query: dict[str, str]) -> bool:
        return query.get("dryRun") == "All"

    def _create(self, target: Target, query: dict[str, str], body: bytes) -> None:
        if target.name is not None:
            raise _not_allowed("POST names a collection, not an object")
        obj = self._decode(body)
        if not isinstance(obj, dict):
            raise ApiStatusError("the request body is not an object")
        if obj.get("apiVersion") != target.resource.api_version or obj.get("kind") != target.resource.kind:
            raise ApiStatusError(f"the body is {obj.get('apiVersion')}/{obj.get('kind')}, the URL names"
                                 f" {target.resource.api_version}/{target.resource.kind}")
        metadata = obj.setdefault("metadata", {})
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = f"{metadata['generateName']}{secrets.token_hex(3)[:5]}"
        if not metadata.get("name"):
            raise ApiStatusError("metadata.name: Required value: name or generateName is required",
                                 HTTPStatus.UNPROCESSABLE_ENTITY, "Invalid",
                                 {"kind": target.resource.kind, "group": target.resource.group, "causes": [
                                     {"reason": "FieldValueRequired", "message": "Required value", "field": "metadata.name"}]})
        if metadata.get("namespace") not in (None, "", target.namespace):
            raise ApiStatusError("the namespace of the provided object does not match the namespace sent on the request")
        metadata["namespace"] = target.namespace
        obj.pop("status", None)
        with self.api.store.write_lock:
            named = Target(target.resource, target.namespace, str(metadata["name"]))
            if self.api.store.get(named.key()) is not None:
                raise ApiStatusError(f'{target.resource.plural}.{target.resource.group} "{metadata["name"]}" already exists',
                                     HTTPStatus.CONFLICT, "AlreadyExists",
                                     {"name": metadata["name"], "group": target.resource.group, "kind": target.resource.plural})
            stored = self.api.commit(named, obj, self._dry_run(query))
        self._json(HTTPStatus.CREATED, self._as_version(target, stored))

    def _replace(self, target: Target, query: dict[str, str], body: bytes) -> None:
        if target.name is None:
            raise _not_allowed("PUT names an object, not a collection")
        obj = self._decode(body)
        if not isinstance(obj, dict):
            raise ApiStatusError("the request body is not an object")
        with self.api.store.write_lock:
            current = self._current(target)
            version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
            if not version:
                raise ApiStatusError("metadata.resourceVersion: Invalid value: 0: must be specified for an update",
                                     HTTPStatus.UNPROCESSABLE_ENTITY, "Invalid")
            self._write(target, current, obj, query)

    def _patch(self, target: Target, query: dict[str, str], body: bytes) -> None:
        if target.name is None:
            raise _not_allowed("PATCH names an object, not a collection")
        content_type = self.headers.get("content-type", "").split(";")[0].strip()
        if content_type not in ACCEPTED_PATCHES:
            raise ApiStatusError(
                f"the body of the request was in an unknown format ({content_type or 'no content-type'}) - accepted"
                f" media types include: {', '.join(ACCEPTED_PATCHES)}",
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType")
        patch = self._decode(body)
        if content_type == MERGE_PATCH and not isinstance(patch, dict):
            # The `kubernetes` client sends merge patch unless told otherwise, a list too:
            # a JSON patch needs _content_type="application/json-patch+json".
            raise ApiStatusError(f"a merge patch ({MERGE_PATCH}) is a JSON object; a list of operations is a"
                                 f" JSON patch ({JSON_PATCH})")
        with self.api.store.write_lock:
            current = self._current(target)
            try:
                patched = merge_patch(current, patch) if content_type == MERGE_PATCH else json_patch(current, patch)
            except PatchError as exc:
                raise ApiStatusError(f"the patch does not apply: {exc}", HTTPStatus.UNPROCESSABLE_ENTITY,
                                     "Invalid") from exc
            if not isinstance(patched, dict):
                raise ApiStatusError("the patch leaves no object", HTTPStatus.UNPROCESSABLE_ENTITY, "Invalid")
            self._write(target, current, patched, query)

    def _write(self, target: Target, current: dict[str, Any], new: dict[str, Any], query: dict[str, str]) -> None:
        """The object as the client wants it -> checked, stored, answered (store lock held)."""
        metadata = new.get("metadata") or {}
        for field, value in (("name", target.name), ("namespace", target.namespace)):
            if metadata.get(field, value) != value:
                raise ApiStatusError(f"the {field} of the object ({metadata.get(field)}) does not match the"
                                     f" {field} on the URL ({value})")
        if new.get("kind", target.resource.kind) != target.resource.kind:
            raise ApiStatusError(f"kind {new.get('kind')} does not match the URL's {target.resource.kind}")
        version = str(metadata.get("resourceVersion") or current["metadata"]["resourceVersion"])
        if version != current["metadata"]["resourceVersion"]:
            assert target.name is not None
            raise ApiStatusError(
                f'Operation cannot be fulfilled on {target.resource.plural}.{target.resource.group} "{target.name}": the object has'
                " been modified; please apply your changes to the latest version and try again",
                HTTPStatus.CONFLICT, "Conflict", {"name": target.name, "group": target.resource.group, "kind": target.resource.plural})
        if target.subresource == "status":
            stored = current if self._dry_run(query) else self.api.store.set_status(target.key(), new.get("status") or {})
            self._json(HTTPStatus.OK, self._as_version(target, stored or current))
            return
        candidate = copy.deepcopy({**new, "apiVersion": current["apiVersion"], "kind": target.resource.kind,
                                   "metadata": {**metadata, "name": target.name, "namespace": target.namespace}})
        if _same_content(current, candidate):  # a no-op write changes nothing, not even the version
            self._json(HTTPStatus.OK, current)
            return
        stored = self.api.commit(target, candidate, self._dry_run(query))
        self._json(HTTPStatus.OK, self._as_version(target, stored))

    def _delete(self, target: Target, query: dict[str, str], _: bytes) -> None:
        if target.name is None:
            raise _not_allowed("deleting a whole collection")
        if target.subresource:
            raise _not_allowed("DELETE of a subresource")
        with self.api.store.write_lock:
            current = self._current(target)
            if not self._dry_run(query):
                self.api.store.delete(target.key())
        self._json(HTTPStatus.OK, current)

    # -- answers -----------------------------------------------------------------------------
    def _json(self, code: HTTPStatus | int, document: dict[str, Any]) -> None:
        self._send(code, json.dumps(document).encode(), "application/json")

    def _send(self, code: HTTPStatus | int, data: bytes, content_type: str) -> None:
        self.send_response(int(code))
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


def write_kubeconfig(path: Path, url: str, namespace: str) -> Path:
    """A kubeconfig with one context for this API (the namespace of the first InferenceService)."""
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": KUBECONFIG_CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": KUBECONFIG_CONTEXT, "user": {}}],
        "contexts": [{"name": KUBECONFIG_CONTEXT,
                      "context": {"cluster": KUBECONFIG_CONTEXT, "user": KUBECONFIG_CONTEXT, "namespace": namespace}}],
        "current-context": KUBECONFIG_CONTEXT,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(yaml.safe_dump(config, sort_keys=False))
    partial.replace(path)
    return path
