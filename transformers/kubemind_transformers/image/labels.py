"""ImageNet-1k class names and top-k post-processing.

imagenet_labels.tsv holds the 1000 classes in the standard index order (WordNet id, then the
class names), taken from timm's ImageNet info files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

LABELS_FILE = Path(__file__).with_name("imagenet_labels.tsv")


@dataclass(frozen=True)
class ImageNetLabels:
    synsets: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def load(cls, path: Path = LABELS_FILE) -> ImageNetLabels:
        rows = [line.split("\t", 1) for line in path.read_text().splitlines() if line]
        # "tabby, tabby cat" -> "tabby": the first lemma is the class's usual name.
        return cls(tuple(r[0] for r in rows), tuple(r[1].split(",")[0].strip() for r in rows))

    def __len__(self) -> int:
        return len(self.names)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def top_k(logits: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Class indices [n, k] (most probable first) and their probabilities [n, k]."""
    probabilities = softmax(logits.astype(np.float32))
    k = min(k, probabilities.shape[-1])
    candidates = np.argpartition(-probabilities, k - 1, axis=-1)[:, :k]
    picked = np.take_along_axis(probabilities, candidates, axis=-1)
    order = np.argsort(-picked, axis=-1)
    return np.take_along_axis(candidates, order, axis=-1), np.take_along_axis(picked, order, axis=-1)
