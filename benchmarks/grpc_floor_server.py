"""The cost of a bare Python gRPC server, for bench_hotpath's floor rows (issue 17).

Serves `inference.GRPCInferenceService` for one model with canned replies: at start it copies the
model's metadata, configuration, statistics and one ModelInfer reply from a real server (kubemind
serving `simple`), then answers every RPC with those bytes, doing no work of its own. What
perf_analyzer measures against it is the transport alone: grpc.aio (`--flavor aio`, what kubemind
uses) or grpc's thread-pool server (`--flavor sync`). A kubemind figure close to the aio floor
means the time is grpc.aio's, not kubemind's.

    python -m benchmarks.grpc_floor_server --copy-from 127.0.0.1:PORT --port PORT --flavor aio
"""

from __future__ import annotations

import argparse
import asyncio
from concurrent import futures
from typing import Any

import grpc
import numpy as np
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kubemind.protocol import triton_extensions_pb2 as ext

SERVICE = "inference.GRPCInferenceService"
MODEL = "simple"


def canned_replies(address: str) -> dict[str, bytes]:
    """Each RPC perf_analyzer calls, answered once by the real server, as serialised bytes."""
    request = pb.ModelInferRequest(model_name=MODEL)
    for name in ("INPUT0", "INPUT1"):
        request.inputs.add(name=name, datatype="INT32", shape=[1, 16])
        request.raw_input_contents.append(np.arange(16, dtype=np.int32).tobytes())
    calls: dict[str, Any] = {
        "ServerLive": pb.ServerLiveRequest(),
        "ServerReady": pb.ServerReadyRequest(),
        "ModelReady": pb.ModelReadyRequest(name=MODEL),
        "ServerMetadata": pb.ServerMetadataRequest(),
        "ModelMetadata": pb.ModelMetadataRequest(name=MODEL),
        "ModelConfig": ext.ModelConfigRequest(name=MODEL),
        "ModelStatistics": ext.ModelStatisticsRequest(name=MODEL),
        "ModelInfer": request,
    }
    replies = {}
    with grpc.insecure_channel(address) as channel:
        for method, message in calls.items():
            call = channel.unary_unary(
                f"/{SERVICE}/{method}",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=lambda raw: raw,
            )
            replies[method] = call(message, timeout=10)
    return replies


class Statistics:
    """ModelStatistics that count the ModelInfer calls, so perf_analyzer's server-side figures
    are not all zero (the benchmark names version 1 with -x: with no version perf_analyzer
    fails on canned replies, "failed to find the requested model version")."""

    def __init__(self, canned: bytes):
        self.message = ext.ModelStatisticsResponse.FromString(canned)
        self.calls = 0

    def reply(self) -> bytes:
        for stats in self.message.model_stats:
            stats.inference_count = stats.execution_count = self.calls
            stats.inference_stats.success.count = self.calls
        return self.message.SerializeToString()


def _handlers(replies: dict[str, bytes], asynchronous: bool) -> grpc.GenericRpcHandler:
    statistics = Statistics(replies["ModelStatistics"])

    def respond_sync(method: str, reply: bytes) -> Any:
        if method == "ModelStatistics":
            return lambda request, context: statistics.reply()
        if method == "ModelInfer":
            def infer(request: bytes, context: Any) -> bytes:
                statistics.calls += 1
                return reply
            return infer
        return lambda request, context: reply

    def respond(method: str, reply: bytes) -> Any:
        answer = respond_sync(method, reply)
        if not asynchronous:
            return answer

        async def run(request: bytes, context: Any) -> bytes:
            return answer(request, context)  # type: ignore[no-any-return]

        return run

    handlers = {
        method: grpc.unary_unary_rpc_method_handler(
            respond(method, reply), request_deserializer=lambda raw: raw, response_serializer=lambda raw: raw
        )
        for method, reply in replies.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


async def serve_aio(replies: dict[str, bytes], port: int) -> None:
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((_handlers(replies, True),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def serve_sync(replies: dict[str, bytes], port: int) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((_handlers(replies, False),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--copy-from", required=True, help="host:port of a v2 gRPC server serving `simple`")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--flavor", choices=("aio", "sync"), default="aio")
    args = parser.parse_args()
    replies = canned_replies(args.copy_from)
    print(f"serving {len(replies)} canned RPCs on 127.0.0.1:{args.port} ({args.flavor})", flush=True)
    if args.flavor == "aio":
        asyncio.run(serve_aio(replies, args.port))
    else:
        serve_sync(replies, args.port)


if __name__ == "__main__":
    main()
