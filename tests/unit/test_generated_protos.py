"""The committed protobuf modules are exactly what `make protos` generates from the .proto."""

from __future__ import annotations

from pathlib import Path

from kubemind.protocol import protos


def test_committed_protobuf_modules_match_the_proto(tmp_path: Path) -> None:
    for generated in protos.generate(tmp_path):
        committed = protos.PROTOCOL_DIR / generated.name
        assert committed.read_text() == generated.read_text(), f"{committed.name} is stale: run `make protos`"


def test_extension_messages_use_triton_field_numbers() -> None:
    # tritonclient.grpc decodes these replies with Triton's own descriptors: numbers must match.
    from kubemind.protocol import triton_extensions_pb2 as ext

    config = ext.ModelConfig.DESCRIPTOR.fields_by_name
    assert (config["backend"].number, config["max_batch_size"].number, config["input"].number) == (17, 4, 5)
    assert ext.ModelOutput.DESCRIPTOR.fields_by_name["dims"].number == 3
    assert ext.ModelInput.DESCRIPTOR.fields_by_name["dims"].number == 4
    assert ext.DataType.Value("TYPE_STRING") == 13
