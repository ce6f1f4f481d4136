#!/usr/bin/env python3
"""Build kubemind's container images from images/*/Containerfile without a registry or a daemon.

    tools/build_images.py [--images NAME,...] [--out DIR] [--list]      (make images; IMAGES=a,b)

Where a normal builder is at hand, `buildah bud -f images/NAME/Containerfile .` builds the same
files. This machine has no container registry and no Docker engine, so this script plays the
builder itself, reading each Containerfile instruction by instruction:

- FROM (the pinned Debian release) is replaced by a `debootstrap --variant=minbase` root file
  system of the same suite, built once and cached under ~/.cache/kubemind/images/base-KEY;
- ARG, ENV, LABEL, WORKDIR, EXPOSE, ENTRYPOINT and CMD become the image configuration;
- COPY copies from the repository root (the build context) into the root file system;
- RUN runs under `chroot` with /proc and /dev mounted, the host's DNS and CA bundle, and each
  `--mount=type=cache,target=T` backed by a folder under the cache (pip downloads are shared);
- the result is committed with `buildah` (STORAGE_DRIVER=vfs) from scratch as one layer, tagged
  kubemind/NAME:VERSION and REGISTRY/kubemind/NAME:VERSION (what the overlays' `images:` name),
  and written out with `buildah push ... oci-archive:OUT/NAME-VERSION.tar`.

Machines with local Python packages (pip's find-links, file:// indexes and constraints, like the
CPU torch wheel on these machines) lend them to the RUN steps of images marked `host_pip` below.

An image is rebuilt only when its inputs change (Containerfile, copied files, build args, base);
the report (OUT/report.json) records seconds and sizes per image.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGES_DIR = ROOT / "images"
CACHE = Path(os.environ.get("KUBEMIND_IMAGES_CACHE", Path.home() / ".cache" / "kubemind" / "images"))
# The registry the overlays' `images:` entries name; images are tagged with it and without it.
REGISTRY = os.environ.get("KUBEMIND_IMAGES_REGISTRY", "registry.kubemind.dev")

# The debootstrap equivalent of `FROM docker.io/library/debian:12.11-slim` plus the apt-get step
# every Containerfile starts with (kept in the base so the per-image apt step is a no-op install).
DEBIAN_SUITE = "bookworm"
DEBIAN_FROM = "docker.io/library/debian:12.11-slim"
DEBIAN_MIRROR = os.environ.get("KUBEMIND_DEBIAN_MIRROR", "http://deb.debian.org/debian")
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")

# Host paths lent (read-only, same path) to RUN steps of host_pip images when they exist.
HOST_PIP_PATHS = ("/opt/wheels", "/opt/pypi", "/opt/pypi-more", "/etc/xdg/pip", "/etc/pip.conf", "/root/.config/pip")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True)
class ImageSpec:
    """One image: images/NAME/Containerfile, built as kubemind/NAME:VERSION."""

    name: str
    # Lend the host's local Python packages (the CPU torch wheel) to RUN steps. Off for the GPU
    # image: a local CPU torch would satisfy torch==2.13.0 and the image would not run on a GPU.
    host_pip: bool = True
    # Build args applied on this machine (on top of the Containerfile's ARG defaults).
    local_build_args: dict[str, str] = field(default_factory=dict)
    # Light images are the ones `make test-images` builds and runs when missing.
    light: bool = False

    @property
    def containerfile(self) -> Path:
        return IMAGES_DIR / self.name / "Containerfile"


# Every image the manifests name (tests/unit/test_images.py keeps this, images/ and the rendered
# overlays in step), plus the ones no manifest uses yet.
IMAGES: tuple[ImageSpec, ...] = (
    ImageSpec("core", light=True),
    ImageSpec("storage-initializer", light=True),
    ImageSpec("predictor-onnx"),
    ImageSpec("predictor-pyfunc"),
    ImageSpec("transformer-image"),
    ImageSpec("transformer-rag"),
    ImageSpec("worker-cv"),
    ImageSpec("drift-service"),
    ImageSpec("rollout-controller"),
    ImageSpec("predictor-triton"),
    # torch's CPU build comes from this machine's local wheel, not PyTorch's index.
    ImageSpec("predictor-vllm-cpu", local_build_args={"TORCH_INDEX_URL": ""}),
    ImageSpec("predictor-vllm-gpu", host_pip=False),
)
BY_NAME = {spec.name: spec for spec in IMAGES}


def version() -> str:
    """kubemind/__init__.py's __version__ (the one place it lives), read as text like setup.py does."""
    text = (ROOT / "kubemind" / "__init__.py").read_text()
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.M)
    if not match:
        raise SystemExit("build_images: no __version__ line in kubemind/__init__.py")
    return match.group(1)


def log(message: str) -> None:
    print(f"images: {message}", flush=True)


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, check=True, text=True, **kwargs)  # type: ignore[call-overload]


def buildah(*args: str, capture: bool = False) -> str:
    env = {**os.environ, "STORAGE_DRIVER": "vfs"}
    result = subprocess.run(
        ["buildah", "--storage-driver", "vfs", *args],
        check=True, text=True, env=env, stdout=subprocess.PIPE if capture else None,
    )
    return (result.stdout or "").strip()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def remove_tree(path: Path) -> None:
    """rm -rf that never follows a mount out of the tree (a leftover /dev bind must survive)."""
    if not path.exists():
        return
    inside = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(path.resolve()) + "/")]
    if inside:
        raise RuntimeError(f"refusing to remove {path}: still mounted inside it: {inside}")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def du_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


# --------------------------------------------------------------------------- the base rootfs


def base_rootfs() -> Path:
    """The debootstrap root file system every image starts from, built once per key."""
    key_text = "|".join([DEBIAN_SUITE, "minbase", ",".join(BASE_PACKAGES), DEBIAN_MIRROR])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:12]
    base = CACHE / f"base-{DEBIAN_SUITE}-{key}"
    with locked(CACHE / f"base-{key}.lock"):
        if (base / ".done").is_file():
            return base / "rootfs"
        remove_tree(base)
        staging = base.with_name(base.name + ".tmp")
        remove_tree(staging)
        staging.mkdir(parents=True)
        log(f"debootstrap {DEBIAN_SUITE} (minbase + {', '.join(BASE_PACKAGES)}) into {base}")
        started = time.monotonic()
        run([
            "debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}",
            DEBIAN_SUITE, str(staging / "rootfs"), DEBIAN_MIRROR,
        ], stdout=subprocess.DEVNULL)
        # What a slim image leaves out: apt's package lists and caches.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (staging / "rootfs" / leftover).glob("*"):
                if item.is_file():
                    item.unlink()
        (staging / ".done").write_text(
            json.dumps({"key": key_text, "seconds": round(time.monotonic() - started, 1)})
        )
        staging.rename(base)
        log(f"base ready in {time.monotonic() - started:.0f} s")
    return base / "rootfs"


# --------------------------------------------------------------------------- Containerfile


@dataclass
class Instruction:
    keyword: str
    args: str


def parse_containerfile(path: Path) -> list[Instruction]:
    """Instructions with continuation lines joined; comments and blank lines dropped."""
    instructions: list[Instruction] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        line = pending + stripped
        pending = ""
        keyword, _, args = line.partition(" ")
        instructions.append(Instruction(keyword.upper(), args.strip()))
    if pending:
        raise ValueError(f"{path}: the last instruction ends with a continuation")
    return instructions


def substitute(text: str, variables: dict[str, str]) -> str:
    """Containerfile variable substitution ($VAR, ${VAR}) for non-RUN instructions."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, "")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", replace, text)


def key_values(args: str, variables: dict[str, str]) -> dict[str, str]:
    """`K=V K2="V 2"` (or the legacy `K V`) as a dict."""
    tokens = shlex.split(substitute(args, variables))
    if tokens and "=" not in tokens[0]:
        return {tokens[0]: " ".join(tokens[1:])}
    return dict(token.split("=", 1) for token in tokens)


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"only the exec form (a JSON list) is supported: {args}")
    return value


@dataclass
class ImageConfig:
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    ports: list[str] = field(default_factory=list)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    workdir: str = "/"


# --------------------------------------------------------------------------- RUN under chroot


@contextlib.contextmanager
def chroot_mounts(rootfs: Path, cache_mounts: dict[str, Path], host_pip: bool) -> Iterator[None]:
    mounted: list[Path] = []

    def bind(source: Path, target: Path, read_only: bool = False) -> None:
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        run(["mount", "--bind", str(source), str(target)])
        mounted.append(target)
        if read_only:
            run(["mount", "-o", "remount,bind,ro", str(target)])

    created: list[Path] = []
    try:
        run(["mount", "-t", "proc", "proc", str(rootfs / "proc")])
        mounted.append(rootfs / "proc")
        bind(Path("/dev"), rootfs / "dev")
        resolv = rootfs / "etc" / "resolv.conf"
        if resolv.is_symlink():
            resolv.unlink()
        shutil.copy2("/etc/resolv.conf", resolv)
        if HOST_CA_BUNDLE.is_file() and (rootfs / HOST_CA_BUNDLE.relative_to("/")).exists():
            bind(HOST_CA_BUNDLE, rootfs / HOST_CA_BUNDLE.relative_to("/"), read_only=True)
        if host_pip:
            for host_path in map(Path, HOST_PIP_PATHS):
                target = rootfs / host_path.relative_to("/")
                if host_path.exists():
                    if not target.exists():
                        created.append(target)
                    bind(host_path, target, read_only=True)
        for cache_target, source in cache_mounts.items():
            source.mkdir(parents=True, exist_ok=True)
            bind(source, rootfs / cache_target.lstrip("/"))
        yield
    finally:
        for target in reversed(mounted):
            subprocess.run(["umount", "-l", str(target)], check=False)
        for target in created:
            if target.is_dir():
                with contextlib.suppress(OSError):
                    target.rmdir()
                    # Remove the empty parents we created too (/opt/pypi -> /opt stays).
            elif target.is_file() and target.stat().st_size == 0:
                target.unlink()
        (rootfs / "etc" / "resolv.conf").unlink(missing_ok=True)


def run_step(rootfs: Path, command: str, env: dict[str, str], spec: ImageSpec, workdir: str) -> None:
    mounts: dict[str, Path] = {}
    while command.startswith("--"):
        flag, _, command = command.partition(" ")
        command = command.lstrip()
        if flag.startswith("--mount="):
            options = dict(part.split("=", 1) for part in flag[len("--mount="):].split(","))
            if options.get("type") != "cache":
                raise ValueError(f"only cache mounts are supported: {flag}")
            target = options["target"]
            cache_id = options.get("id", target).strip("/").replace("/", "_")
            mounts[target] = CACHE / "run-cache" / cache_id
        else:
            raise ValueError(f"unsupported RUN flag {flag}")
    host_env = {}
    if spec.host_pip:
        host_env = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    run_env = {
        "HOME": "/root",
        "DEBIAN_FRONTEND": "noninteractive",
        "LANG": "C.UTF-8",
        **host_env,
        **env,
    }
    # Image ENV may set PATH; keep a usable one either way.
    run_env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
    with chroot_mounts(rootfs, mounts, spec.host_pip):
        shell = f"cd {shlex.quote(workdir)} && {command}"
        subprocess.run(
            ["chroot", str(rootfs), "/bin/sh", "-ec", shell], check=True, env=run_env,
        )


# --------------------------------------------------------------------------- one image


def copy_into(rootfs: Path, args: str, variables: dict[str, str]) -> None:
    tokens = shlex.split(substitute(args, variables))
    if any(token.startswith("--") for token in tokens):
        raise ValueError(f"COPY flags are not supported: {args}")
    *sources, dest = tokens
    target = rootfs / dest.lstrip("/")
    into_dir = dest.endswith("/") or len(sources) > 1
    for source in sources:
        src = (ROOT / source).resolve()
        if ROOT not in src.parents and src != ROOT:
            raise ValueError(f"COPY source {source} is outside the build context")
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        else:
            destination = target / src.name if into_dir else target
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, destination)


def copied_sources(instructions: list[Instruction]) -> list[Path]:
    sources: list[Path] = []
    for instruction in instructions:
        if instruction.keyword == "COPY":
            sources.extend(ROOT / token for token in shlex.split(instruction.args)[:-1])
    return sources


def inputs_digest(spec: ImageSpec, instructions: list[Instruction], base: Path, build_args: dict[str, str]) -> str:
    digest = hashlib.sha256()
    digest.update(spec.containerfile.read_bytes())
    digest.update(str(base).encode())
    digest.update(json.dumps([sorted(build_args.items()), spec.host_pip, REGISTRY, version()]).encode())
    for source in copied_sources(instructions):
        files = [source] if source.is_file() else sorted(
            p for p in source.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.endswith(".pyc")
            and not any(part.endswith(".egg-info") for part in p.parts)
        )
        for path in files:
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def refs(name: str) -> tuple[str, str]:
    tag = version()
    return f"kubemind/{name}:{tag}", f"{REGISTRY}/kubemind/{name}:{tag}"


def image_exists(ref: str) -> bool:
    result = subprocess.run(
        ["buildah", "--storage-driver", "vfs", "inspect", "--type", "image", ref],
        capture_output=True, text=True, env={**os.environ, "STORAGE_DRIVER": "vfs"},
    )
    return result.returncode == 0


def discard(container: str) -> None:
    """Remove a failed build's container, unless something is still mounted inside it (buildah rm
    would then delete through the mount)."""
    mount = subprocess.run(["buildah", "--storage-driver", "vfs", "mount", container],
                           capture_output=True, text=True, env={**os.environ, "STORAGE_DRIVER": "vfs"})
    path = mount.stdout.strip()
    if path:
        inside = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                  if line.split()[1].startswith(path.rstrip("/") + "/")]
        if inside:
            log(f"not removing container {container}: still mounted inside it: {inside}")
            return
    subprocess.run(["buildah", "--storage-driver", "vfs", "rm", container], capture_output=True,
                   env={**os.environ, "STORAGE_DRIVER": "vfs"}, check=False)


def apply_instructions(spec: ImageSpec, instructions: list[Instruction], rootfs: Path,
                       variables: dict[str, str], config: ImageConfig) -> dict[str, str]:
    """Everything after FROM, applied to `rootfs` and `config`; returns the image's ENV."""
    env: dict[str, str] = {}
    for instruction in instructions:
        keyword, args = instruction.keyword, instruction.args
        step_vars = {**variables, **env}
        if keyword == "ARG":
            continue
        if keyword == "ENV":
            env.update(key_values(args, step_vars))
        elif keyword == "LABEL":
            config.labels.update(key_values(args, step_vars))
        elif keyword == "WORKDIR":
            config.workdir = substitute(args, step_vars)
            (rootfs / config.workdir.lstrip("/")).mkdir(parents=True, exist_ok=True)
        elif keyword == "EXPOSE":
            config.ports.extend(substitute(args, step_vars).split())
        elif keyword == "ENTRYPOINT":
            config.entrypoint = exec_form(args)
        elif keyword == "CMD":
            config.cmd = exec_form(args)
        elif keyword == "COPY":
            copy_into(rootfs, args, step_vars)
        elif keyword == "RUN":
            log(f"{spec.name}: RUN {args[:100]}{'...' if len(args) > 100 else ''}")
            step_started = time.monotonic()
            run_step(rootfs, args, {**variables, **env}, spec, config.workdir)
            log(f"{spec.name}: RUN took {time.monotonic() - step_started:.0f} s")
        else:
            raise ValueError(f"{spec.containerfile}: unsupported instruction {keyword}")
    return env


def build(spec: ImageSpec, out: Path) -> dict[str, object]:
    started = time.monotonic()
    instructions = parse_containerfile(spec.containerfile)
    if not instructions or instructions[0].keyword != "FROM":
        raise ValueError(f"{spec.containerfile}: must start with FROM")
    if instructions[0].args != DEBIAN_FROM:
        raise ValueError(
            f"{spec.containerfile}: FROM {instructions[0].args}; this builder replaces exactly"
            f" {DEBIAN_FROM} by its debootstrap base"
        )
    base = base_rootfs()
    variables: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG":
            name, _, default = instruction.args.partition("=")
            variables[name] = default
    variables.update(spec.local_build_args)
    digest = inputs_digest(spec, instructions, base, variables)
    local_ref, registry_ref = refs(spec.name)
    archive = out / f"{spec.name}-{version()}.tar"
    stamp = out / f"{spec.name}-{version()}.inputs"
    if (
        archive.is_file() and stamp.is_file() and stamp.read_text().strip() == digest
        and image_exists(local_ref)
    ):
        log(f"{spec.name}: up to date ({local_ref}, inputs {digest})")
        return {"name": spec.name, "cached": True, "archive": str(archive),
                "archive_bytes": archive.stat().st_size, "ref": registry_ref}

    # The root file system is built in place, in the mount of a `buildah from scratch` container.
    container = buildah("from", "--name", f"kubemind-build-{spec.name}-{os.getpid()}", "scratch",
                        capture=True)
    try:
        rootfs = Path(buildah("mount", container, capture=True))
        log(f"{spec.name}: copying the base root file system")
        run(["cp", "-a", f"{base}/.", str(rootfs)])
        config = ImageConfig()
        env = apply_instructions(spec, instructions[1:], rootfs, variables, config)
        config.env = env
        # What no image should carry: caches and apt lists the build left.
        for leftover in ("root/.cache", "tmp", "var/lib/apt/lists", "var/cache/apt/archives"):
            for item in (rootfs / leftover).glob("*"):
                remove_tree(item)
        rootfs_bytes = du_bytes(rootfs)
        debian_version = (rootfs / "etc" / "debian_version").read_text().strip()
        buildah("umount", container, capture=True)
        commit_started = time.monotonic()
        config_args = ["--workingdir", config.workdir]
        for key, value in config.env.items():
            config_args += ["--env", f"{key}={value}"]
        labels = {
            "org.opencontainers.image.title": f"kubemind/{spec.name}",
            "org.opencontainers.image.version": version(),
            # Not DEBIAN_FROM itself: debootstrap installs the suite's current point release,
            # recorded here (the Containerfiles pin the slim image of one point release).
            "io.kubemind.base": f"debootstrap {DEBIAN_SUITE} minbase from {DEBIAN_MIRROR}",
            "io.kubemind.debian-version": debian_version,
            "io.kubemind.inputs": digest,
            **config.labels,
        }
        for key, value in labels.items():
            config_args += ["--label", f"{key}={value}"]
        for port in config.ports:
            config_args += ["--port", port]
        if config.entrypoint is not None:
            config_args += ["--entrypoint", json.dumps(config.entrypoint)]
        config_args += ["--cmd", json.dumps(config.cmd) if config.cmd else ""]
        buildah("config", *config_args, container)
        buildah("commit", "--quiet", "--rm", container, local_ref, capture=True)
        container = ""
    finally:
        if container:
            discard(container)
    buildah("tag", local_ref, registry_ref)
    commit_seconds = time.monotonic() - commit_started
    out.mkdir(parents=True, exist_ok=True)
    archive.unlink(missing_ok=True)
    push_started = time.monotonic()
    buildah("push", "--quiet", local_ref, f"oci-archive:{archive}:{registry_ref}")
    push_seconds = time.monotonic() - push_started
    stamp.write_text(digest + "\n")
    seconds = time.monotonic() - started
    log(f"{spec.name}: {registry_ref} in {seconds:.0f} s (rootfs {rootfs_bytes / 1e6:.0f} MB,"
        f" archive {archive.stat().st_size / 1e6:.0f} MB) -> {archive}")
    return {
        "name": spec.name, "cached": False, "ref": registry_ref, "local_ref": local_ref,
        "seconds": round(seconds, 1), "commit_seconds": round(commit_seconds, 1),
        "push_seconds": round(push_seconds, 1), "rootfs_bytes": rootfs_bytes,
        "archive": str(archive), "archive_bytes": archive.stat().st_size, "inputs": digest,
    }


def selected(names: str | None) -> list[ImageSpec]:
    if not names:
        return list(IMAGES)
    chosen = [name.strip() for name in names.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in BY_NAME]
    if unknown:
        raise SystemExit(f"build_images: unknown image(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    return [BY_NAME[name] for name in chosen]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default=os.environ.get("IMAGES", ""),
                        help="comma-separated image names (default: all; env IMAGES)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "images",
                        help="where the OCI archives and report.json go")
    parser.add_argument("--list", action="store_true", help="print the image names and exit")
    args = parser.parse_args(argv)
    if args.list:
        for spec in IMAGES:
            print(spec.name)
        return 0
    if os.geteuid() != 0:
        raise SystemExit("build_images: needs root (debootstrap, chroot, mount)")
    missing = [package for package in ("debootstrap", "buildah") if shutil.which(package) is None]
    if missing:
        # Also in requirements/apt.txt (tools/install.sh); here so `make images` needs no venv.
        log(f"apt-get install {' '.join(missing)}")
        run(["apt-get", "update", "-qq"])
        run(["apt-get", "install", "-y", "-qq", *missing], env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    args.out.mkdir(parents=True, exist_ok=True)
    report_path = args.out / "report.json"
    failed: list[str] = []
    for spec in selected(args.images):
        # One lock per image: a test can build the light images while `make images` builds others.
        try:
            with locked(CACHE / f"build-{spec.name}.lock"):
                result = build(spec, args.out)
        except (subprocess.CalledProcessError, ValueError, RuntimeError) as error:
            log(f"{spec.name}: FAILED: {error}")
            failed.append(spec.name)
            continue
        if not result.get("cached"):
            with locked(CACHE / "report.lock"):
                report = json.loads(report_path.read_text()) if report_path.is_file() else {}
                report[spec.name] = result
                report_path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
