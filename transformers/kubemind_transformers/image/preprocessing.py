"""Encoded image bytes -> the model's UINT8 [n, size, size, 3] pixels: decode, resize, centre-crop.

No float work here: the classifier's graph normalises the pixels itself (export.py prepends the
cast, mean/std and HWC -> CHW transpose), and the forwarded tensor is a quarter of an FP32 one.

Runs in a thread pool (Pillow releases the GIL while decoding and resizing), never on the event
loop. Every error names the instance index, because a batch of 32 with one bad image should say
which one (or, for an upload, the form field or body it came in: pass that name as `index`).
"""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np
from PIL import Image, UnidentifiedImageError

from kubemind.errors import InvalidInput
from kubemind_transformers.image.settings import ImagePreparationSettings

# Magic numbers of the formats Pillow decodes that clients send; anything else is tried as base64.
_IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"BM", b"RIFF", b"II*\x00", b"MM\x00*")
# The only formats Pillow may open, raw or base64 alike: without `formats=` it tries every
# plugin it has, and EPS hands the bytes to Ghostscript.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")
NOT_ACCEPTED = f"not an image in an accepted format ({', '.join(ALLOWED_FORMATS)})"
_ADDRESS = re.compile(r" (object )?at 0x[0-9a-fA-F]+")


def _subject(index: int | str) -> str:
    """What an error names: a batch's instance, or an upload's field."""
    return f"instance {index}" if isinstance(index, int) else index


def _reason(exc: BaseException) -> str:
    """An exception's text for a client: no repr with a memory address in it."""
    return _ADDRESS.sub("", str(exc))


def raw_image_bytes(index: int, item: bytes | str) -> bytes:
    """The encoded image in one BYTES element: raw bytes (binary/gRPC) or base64 text (JSON)."""
    data = item.encode("ascii", "replace") if isinstance(item, str) else bytes(item)
    if data.startswith(_IMAGE_SIGNATURES):
        return data
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        # Raw bytes in no accepted format and base64 of one get the same answer.
        raise InvalidInput(f"{_subject(index)}: {NOT_ACCEPTED} (raw or base64)") from None


class ImagePreprocessor:
    """Turns encoded images into a batch of resized RGB pixels, as the classifier takes them."""

    def __init__(self, settings: ImagePreparationSettings):
        self.size = settings.image_size
        self.resize_short_side = round(settings.image_size / settings.resize_ratio)
        self.max_pixels = settings.max_pixels
        # Pillow's own bomb check raises inside Image.open (a 500 before kubemind's limit could
        # answer). `open` below checks max_pixels on the lazily read header before any decode,
        # so that is the one limit: Pillow's is switched off (process-wide; it has no other knob).
        Image.MAX_IMAGE_PIXELS = None

    def open(self, index: int | str, data: bytes) -> Image.Image:
        """Read the header (cheap) and refuse oversized images before decoding a pixel."""
        try:
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)  # lazy: reads the header only
        except UnidentifiedImageError:
            raise InvalidInput(f"{_subject(index)}: {NOT_ACCEPTED}") from None
        except Image.DecompressionBombError as exc:
            raise InvalidInput(f"{_subject(index)}: {_reason(exc)}") from None
        except (OSError, ValueError, SyntaxError) as exc:
            raise InvalidInput(f"{_subject(index)}: cannot decode image ({_reason(exc)})") from None
        width, height = image.size
        if width * height > self.max_pixels:
            raise InvalidInput(
                f"{_subject(index)}: image of {width}x{height} pixels is over the limit of {self.max_pixels}"
            )
        return image

    def prepare(self, index: int | str, data: bytes, out: np.ndarray) -> None:
        """One image -> `out`, a UINT8 [size, size, 3] slice of the batch."""
        image = self.open(index, data)
        try:
            # JPEG can decode at 1/2, 1/4, 1/8 scale directly: far cheaper than a full decode
            # followed by a downscale, and the result is still larger than what we resize to.
            image.draft("RGB", (self.resize_short_side, self.resize_short_side))
            image = image.convert("RGB")
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise InvalidInput(f"{_subject(index)}: cannot decode image ({_reason(exc)})") from None
        width, height = image.size
        ratio = self.resize_short_side / min(width, height)
        resized = (max(self.size, round(width * ratio)), max(self.size, round(height * ratio)))
        left, top = (resized[0] - self.size) // 2, (resized[1] - self.size) // 2
        # resize with box= crops and resizes in one pass (only the centre region is resampled).
        box = (left / ratio, top / ratio, (left + self.size) / ratio, (top + self.size) / ratio)
        image = image.resize((self.size, self.size), Image.Resampling.BILINEAR, box=box)
        out[...] = np.asarray(image)

    def new_batch(self, count: int) -> np.ndarray:
        return np.empty((count, self.size, self.size, 3), dtype=np.uint8)

    def prepare_encoded(self, index: int, item: bytes | str, out: np.ndarray) -> None:
        """One BYTES element (raw or base64) -> `out` (UINT8 [size, size, 3])."""
        self.prepare(index, raw_image_bytes(index, item), out)
