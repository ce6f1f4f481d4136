"""Same-host hand-off of the pixel tensor to the predictor through the system shared-memory
extension (`--predictor_shared_memory`), instead of 150 kB per image on the gRPC wire.

The transformer keeps a pool of slots: each a POSIX shared-memory segment sized for one
max-batch request and registered with the predictor as its own region. A request holds one slot
exclusively from preprocessing until the predictor has answered (the images are decoded straight
into it), so concurrent requests never share bytes; when every slot is busy (more requests in
flight than `predictor_shared_memory_slots`) the request goes over the wire instead of waiting.

Once the predictor has mapped a segment its name is unlinked from /dev/shm: the memory lives as
long as a mapping does, so not even a SIGKILLed transformer leaves a file behind. `close()`
unregisters every region.

The wire is always the fallback, never an error: a predictor that refuses a region (on another
host its /dev/shm has no such key; a server without the extension) is logged once and the
transformer forwards over the wire from then on; a predictor that forgot its regions (it was
restarted) gets that request over the wire and new regions from the next one.
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field

import numpy as np

from kubemind.errors import BackendTimeout, BackendUnavailable, KubemindError
from kubemind.oip_client import OIPClient
from kubemind.protocol.shared_memory import Segment

logger = logging.getLogger("kubemind.image.handoff")

UNREGISTER_TIMEOUT_SECONDS = 2.0


@dataclass(eq=False)
class Slot:
    region: str
    segment: Segment
    generation: int
    in_use: bool = field(default=False)

    def batch(self, count: int, image_shape: tuple[int, ...]) -> np.ndarray:
        """A UINT8 [count, *image_shape] array whose bytes are the segment's first ones."""
        return np.ndarray((count, *image_shape), dtype=np.uint8, buffer=self.segment.memory)


class SharedMemoryHandoff:
    """The slots one transformer process hands its tensors over in (one event loop, no locks)."""

    def __init__(self, client: OIPClient, slot_bytes: int, max_slots: int, prefix: str = "kubemind-image"):
        self.client = client
        self.slot_bytes = slot_bytes
        self.max_slots = max_slots
        # pid for whoever reads /dev/shm or the predictor's status; the random part because a
        # restarted container is often pid 1 again.
        self._names = f"{prefix}-{os.getpid()}-{secrets.token_hex(4)}"
        self._count = 0
        self._slots: list[Slot] = []
        self._registered: set[str] = set()
        self._generation = 0
        self.refused: str | None = None
        """Why the predictor cannot take shared memory (then every request uses the wire)."""

    async def acquire(self) -> Slot | None:
        """A slot for this request's exclusive use, or None: send this one over the wire."""
        if self.refused is not None:
            return None
        for slot in self._slots:
            if not slot.in_use:
                slot.in_use = True
                return slot
        if len(self._slots) >= self.max_slots:
            return None
        return await self._new_slot()

    def release(self, slot: Slot) -> None:
        slot.in_use = False
        if slot.generation != self._generation:
            self._discard(slot)

    def lost(self, slot: Slot) -> None:
        """The predictor no longer knows `slot`'s region (it restarted): neither does it know any
        other; every slot is replaced by a newly registered one when next needed."""
        logger.warning("the predictor at %s lost shared memory region '%s' (restarted?); registering new regions",
                       self.client.url, slot.region)
        self._generation += 1
        self._registered.clear()
        for other in list(self._slots):
            if not other.in_use:
                self._discard(other)

    async def _new_slot(self) -> Slot | None:
        self._count += 1
        region = f"{self._names}-{self._count}"
        try:
            segment = Segment(region, self.slot_bytes)
        except OSError as exc:
            self._refuse(f"cannot create a {self.slot_bytes}-byte segment in /dev/shm: {exc.strerror}")
            return None
        slot = Slot(region, segment, self._generation, in_use=True)
        self._slots.append(slot)  # counts towards max_slots while it is being registered
        try:
            self._registered.add(region)
            await self.client.register_system_shared_memory(region, f"/{region}", self.slot_bytes)
        except (BackendUnavailable, BackendTimeout):
            self._discard(slot)  # the predictor is not answering now: ask again with the next request
            return None
        except KubemindError as exc:
            self._registered.discard(region)
            self._discard(slot)
            self._refuse(exc.message)
            return None
        except BaseException:
            self._discard(slot)
            raise
        finally:
            segment.unlink()  # mapped by the predictor (or never to be): no name left in /dev/shm
        if self._count == 1:
            logger.info("handing tensors to the predictor at %s through shared memory (regions %s-*)",
                        self.client.url, self._names)
        return slot

    def _refuse(self, reason: str) -> None:
        if self.refused is None:
            self.refused = reason
            logger.warning("the predictor at %s cannot take shared memory (%s): tensors go over the wire",
                           self.client.url, reason)

    def _discard(self, slot: Slot) -> None:
        if slot in self._slots:
            self._slots.remove(slot)
        slot.segment.close()

    async def close(self) -> None:
        """Unregister every region this process registered and unmap its segments."""
        for region in sorted(self._registered):
            try:
                await self.client.unregister_system_shared_memory(region, timeout=UNREGISTER_TIMEOUT_SECONDS)
            except KubemindError as exc:
                logger.info("could not unregister shared memory region '%s': %s", region, exc.message)
        self._registered.clear()
        for slot in list(self._slots):
            self._discard(slot)
