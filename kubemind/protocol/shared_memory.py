"""Triton's system shared-memory extension: tensors read from and written to POSIX shared-memory
regions that a client on the same host created and registered.

A client creates a region (`tritonclient.utils.shared_memory.create_shared_memory_region`, i.e.
shm_open + mmap), registers it by name with its key, offset and size, and then names it in an
input's or a requested output's parameters (`shared_memory_region`, `shared_memory_offset`,
`shared_memory_byte_size`) instead of sending the bytes. Every access is checked against the
registered window: a missing region, or an offset and size outside it, is a 400 naming the
region, and the server never reads or writes outside it.

The segment is opened through /dev/shm directly rather than `multiprocessing.shared_memory`,
whose resource tracker would unlink the client's segment when this process exits.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubemind.errors import InvalidInput, NotImplementedByModel

SHM_DIR = Path("/dev/shm")
REGION = "shared_memory_region"
OFFSET = "shared_memory_offset"
BYTE_SIZE = "shared_memory_byte_size"


@dataclass
class Region:
    name: str
    key: str
    offset: int
    byte_size: int
    memory: mmap.mmap

    def status(self) -> dict[str, Any]:
        return {"name": self.name, "key": self.key, "offset": self.offset, "byte_size": self.byte_size}


def _non_negative(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what}: must be a non-negative integer, got {value!r}", param=what)
    return int(value)


class SharedMemoryRegistry:
    """The regions registered with one server."""

    def __init__(self) -> None:
        self._regions: dict[str, Region] = {}
        self._lock = threading.Lock()

    def register(self, name: str, key: str, offset: Any, byte_size: Any) -> None:
        if not name:
            raise InvalidInput("name: a shared-memory region needs a name", param="name")
        offset, byte_size = _non_negative(offset, "offset"), _non_negative(byte_size, "byte_size")
        if not isinstance(key, str) or not key.strip("/") or "/" in key.strip("/"):
            raise InvalidInput(f"key: {key!r} is not a POSIX shared-memory name", param="key")
        with self._lock:
            if name in self._regions:
                raise InvalidInput(f"shared memory region '{name}' is already registered", param="name")
            path = SHM_DIR / key.strip("/")
            try:
                fd = os.open(path, os.O_RDWR)
            except OSError as exc:
                raise InvalidInput(
                    f"unable to open shared memory region '{name}' (key '{key}'): {exc.strerror}", param="key"
                ) from None
            try:
                size = os.fstat(fd).st_size
                if byte_size == 0 or offset + byte_size > size:
                    raise InvalidInput(
                        f"shared memory region '{name}': offset {offset} + byte_size {byte_size} is outside "
                        f"the {size}-byte segment '{key}'",
                        param="byte_size",
                    )
                memory = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            finally:
                os.close(fd)
            self._regions[name] = Region(name, key, offset, byte_size, memory)

    def unregister(self, name: str | None = None) -> None:
        """Unregister one region, or all of them when no name is given (Triton's semantics)."""
        with self._lock:
            names = [name] if name else list(self._regions)
            for region_name in names:
                region = self._regions.pop(region_name, None)
                if region is not None:
                    region.memory.close()

    def status(self, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if name:
                if name not in self._regions:
                    raise InvalidInput(f"unable to find system shared memory region: '{name}'", param="name")
                return [self._regions[name].status()]
            return [region.status() for region in self._regions.values()]

    def close(self) -> None:
        self.unregister()

    def _window(self, tensor: str, parameters: dict[str, Any]) -> tuple[Region, int, int]:
        name = parameters.get(REGION)
        region = self._regions.get(name) if isinstance(name, str) else None
        if region is None:
            raise InvalidInput(f"tensor '{tensor}': shared memory region '{name}' is not registered", param=tensor)
        offset = _non_negative(parameters.get(OFFSET, 0), f"{tensor}.{OFFSET}")
        if BYTE_SIZE not in parameters:
            raise InvalidInput(f"tensor '{tensor}': {BYTE_SIZE} is required with {REGION}", param=tensor)
        size = _non_negative(parameters[BYTE_SIZE], f"{tensor}.{BYTE_SIZE}")
        if offset + size > region.byte_size:
            raise InvalidInput(
                f"tensor '{tensor}': offset {offset} + byte_size {size} is outside shared memory region "
                f"'{region.name}' ({region.byte_size} bytes)",
                param=tensor,
            )
        return region, region.offset + offset, size

    def read(self, tensor: str, parameters: dict[str, Any]) -> bytes:
        """The bytes of an input that lives in a region (a copy: the client may reuse it)."""
        with self._lock:
            region, start, size = self._window(tensor, parameters)
            return region.memory[start : start + size]

    def write(self, tensor: str, parameters: dict[str, Any], data: bytes) -> int:
        """Write an output into its region; returns the bytes written."""
        with self._lock:
            region, start, size = self._window(tensor, parameters)
            if len(data) > size:
                raise InvalidInput(
                    f"output '{tensor}': {len(data)} bytes do not fit the {size} bytes given in shared memory "
                    f"region '{region.name}'",
                    param=tensor,
                )
            region.memory[start : start + len(data)] = data
            return len(data)


class Segment:
    """A POSIX shared-memory segment this process creates and owns: the client's side of the
    extension (what `tritonclient.utils.shared_memory` does, without importing tritonclient).

    The name is created exclusively (O_EXCL: never another process's segment), readable by this
    user only, and its memory is allocated up front. `unlink()` removes the name from /dev/shm; the memory stays valid for every
    process that mapped it until the last mapping closes."""

    def __init__(self, key: str, byte_size: int):
        if byte_size <= 0:
            raise ValueError(f"a shared-memory segment needs a positive size, got {byte_size}")
        self.key, self.byte_size = key, byte_size
        self.path = SHM_DIR / key.strip("/")
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            # Allocated now: a write into a sparse page of a full /dev/shm (Docker's default is
            # 64 MiB) would kill the process with SIGBUS; this fails here with ENOSPC instead.
            os.posix_fallocate(fd, 0, byte_size)
            self.memory = mmap.mmap(fd, byte_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.unlink(self.path)
            raise
        finally:
            os.close(fd)

    def unlink(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def close(self) -> None:
        """Unlink the name and unmap this process's view (left to the garbage collector while a
        numpy view of it still exists)."""
        self.unlink()
        with contextlib.suppress(BufferError):
            self.memory.close()


def uses_shared_memory(parameters: Any) -> bool:
    return isinstance(parameters, dict) and REGION in parameters


def message_uses_shared_memory(message: Any) -> bool:
    """Whether a gRPC ModelInferRequest has any input or requested output in a shared-memory
    region, read from the protobuf parameter maps without decoding them."""
    return any(REGION in tensor.parameters for tensor in (*message.inputs, *message.outputs))


def cuda_not_supported(*_: Any) -> None:
    raise NotImplementedByModel("CUDA shared memory is not supported by this server (no GPU); use system shared memory")


def cuda_status(name: str | None) -> list[dict[str, Any]]:
    """No CUDA region is ever registered: all of them is none, a named one is unknown (clients
    such as Triton's examples ask for the status, and unregister all, before they start)."""
    if name:
        raise InvalidInput(f"unable to find cuda shared memory region: '{name}'", param="name")
    return []


__all__ = ["BYTE_SIZE", "OFFSET", "REGION", "Segment", "SharedMemoryRegistry", "cuda_not_supported", "cuda_status", "uses_shared_memory"]
