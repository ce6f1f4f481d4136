"""The Open Inference Protocol over gRPC, with Triton's extension RPCs.

One generic handler serves `inference.GRPCInferenceService`: the six core RPCs with KServe's
message classes, and ModelConfig, ModelStatistics and RepositoryIndex with kubemind's
wire-compatible messages (see triton_extensions.proto for why they are kubemind's own).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

from kubemind.codecs import decode_grpc_request, encode_grpc_response
from kubemind.datatypes import from_triton
from kubemind.errors import as_kubemind_error, grpc_code
from kubemind.payload_logger import log_grpc_payloads
from kubemind.protocol import triton_extensions_pb2 as ext
from kubemind.protocol.grpc_stream import StreamInfer
from kubemind.protocol.pipeline import Pipeline
from kubemind.protocol.shared_memory import cuda_not_supported, cuda_status
from kubemind.settings import ComponentSettings
from kubemind.telemetry import REQUEST_ID, RequestRecord

SERVICE_NAME = "inference.GRPCInferenceService"

Method = Callable[[Any, grpc.aio.ServicerContext, RequestRecord], Awaitable[Message | bytes]]


class GrpcEndpoints:
    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        self.service = pipeline.service

    def begin(self, name: str, request: Any, context: grpc.aio.ServicerContext) -> RequestRecord:
        metadata = context.invocation_metadata() or ()
        model = getattr(request, "model_name", "") or getattr(request, "name", "")
        return self.pipeline.begin("grpc", name, model, ((k, str(v)) for k, v in metadata))

    def wrap(self, name: str, method: Method) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message | bytes]]:
        async def run(request: Any, context: grpc.aio.ServicerContext) -> Message | bytes:
            record = self.begin(name, request, context)
            failure = None
            try:
                async with self.pipeline.deadline(f"{name} call"):
                    reply = await method(request, context, record)
            except Exception as exc:
                failure = as_kubemind_error(exc)
                record.status, record.error = int(failure.status), failure.message
            context.set_trailing_metadata(((REQUEST_ID, record.request_id),))
            if name == "ModelInfer" and self.pipeline.payloads.enabled:
                log_grpc_payloads(self.pipeline.payloads, record, request, reply if failure is None else None)
            self.pipeline.finish(record, account=name == "ModelInfer")
            if failure is not None:
                await context.abort(grpc_code(failure.status), failure.message)
            return reply

        return run

    async def server_live(self, request: pb.ServerLiveRequest, context: Any, record: RequestRecord) -> Message:
        return pb.ServerLiveResponse(live=True)

    async def server_ready(self, request: pb.ServerReadyRequest, context: Any, record: RequestRecord) -> Message:
        return pb.ServerReadyResponse(ready=await self.service.server_ready())

    async def model_ready(self, request: pb.ModelReadyRequest, context: Any, record: RequestRecord) -> Message:
        return pb.ModelReadyResponse(ready=await self.service.model_ready(request.name, request.version or None))

    async def server_metadata(self, request: pb.ServerMetadataRequest, context: Any, record: RequestRecord) -> Message:
        return pb.ServerMetadataResponse(**self.service.server_metadata())

    async def model_metadata(self, request: pb.ModelMetadataRequest, context: Any, record: RequestRecord) -> Message:
        metadata = await self.service.model_metadata(request.name, request.version or None)
        return pb.ModelMetadataResponse(
            name=metadata["name"],
            versions=metadata.get("versions", []),
            platform=metadata.get("platform", ""),
            inputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in metadata.get("inputs", [])],
            outputs=[pb.ModelMetadataResponse.TensorMetadata(**t) for t in metadata.get("outputs", [])],
        )

    async def model_infer(self, request: pb.ModelInferRequest, context: Any, record: RequestRecord) -> Message | bytes:
        forwarded = await self.service.forward_grpc(request, record.headers, record)
        if forwarded is not None:
            return forwarded
        since = record.started
        shared_memory = self.service.shared_memory
        infer_request = decode_grpc_request(request, shared_memory)
        record.stage("decode", since)
        response, version = await self.service.infer(infer_request, record.headers, record)
        since = time.perf_counter()
        reply = encode_grpc_response(response, infer_request, version, shared_memory)
        record.stage("encode", since)
        return reply

    async def model_config(self, request: ext.ModelConfigRequest, context: Any, record: RequestRecord) -> Message:
        config = self.service.model_config(request.name, request.version or None)
        reply = ext.ModelConfigResponse()
        target = reply.config
        target.name, target.platform, target.backend = config["name"], config["platform"], config["backend"]
        target.max_batch_size = config["max_batch_size"]
        target.version_policy.specific.versions.extend(config["version_policy"]["specific"]["versions"])
        for key, repeated in (("input", target.input), ("output", target.output)):
            for tensor in config[key]:
                repeated.add(name=tensor["name"], data_type=from_triton(tensor["data_type"]).triton_enum, dims=tensor["dims"])
        return reply

    async def model_statistics(self, request: ext.ModelStatisticsRequest, context: Any, record: RequestRecord) -> Message:
        reply = ext.ModelStatisticsResponse()
        for stats in self.service.model_statistics(request.name or None, request.version or None):
            entry = reply.model_stats.add(
                name=stats["name"],
                version=stats["version"],
                last_inference=stats["last_inference"],
                inference_count=stats["inference_count"],
                execution_count=stats["execution_count"],
            )
            for stage, duration in stats["inference_stats"].items():
                getattr(entry.inference_stats, stage).CopyFrom(ext.StatisticDuration(**duration))
        return reply

    async def repository_index(self, request: ext.RepositoryIndexRequest, context: Any, record: RequestRecord) -> Message:
        index = await self.service.repository_index(request.ready)
        reply = ext.RepositoryIndexResponse()
        for entry in index:
            reply.models.add(**entry)
        return reply

    async def shm_status(self, request: ext.SystemSharedMemoryStatusRequest, context: Any, record: RequestRecord) -> Message:
        reply = ext.SystemSharedMemoryStatusResponse()
        for region in self.service.shared_memory.status(request.name or None):
            reply.regions[region["name"]].CopyFrom(ext.SystemSharedMemoryStatusResponse.RegionStatus(**region))
        return reply

    async def shm_register(self, request: ext.SystemSharedMemoryRegisterRequest, context: Any, record: RequestRecord) -> Message:
        self.service.shared_memory.register(request.name, request.key, request.offset, request.byte_size)
        return ext.SystemSharedMemoryRegisterResponse()

    async def shm_unregister(self, request: ext.SystemSharedMemoryUnregisterRequest, context: Any, record: RequestRecord) -> Message:
        self.service.shared_memory.unregister(request.name or None)
        return ext.SystemSharedMemoryUnregisterResponse()

    async def cuda_shm_status(self, request: ext.CudaSharedMemoryStatusRequest, context: Any, record: RequestRecord) -> Message:
        cuda_status(request.name or None)
        return ext.CudaSharedMemoryStatusResponse()

    async def cuda_shm_register(self, request: ext.CudaSharedMemoryRegisterRequest, context: Any, record: RequestRecord) -> Message:
        cuda_not_supported()
        return ext.CudaSharedMemoryRegisterResponse()

    async def cuda_shm_unregister(self, request: ext.CudaSharedMemoryUnregisterRequest, context: Any, record: RequestRecord) -> Message:
        return ext.CudaSharedMemoryUnregisterResponse()  # nothing can have been registered

    def generic_handler(self) -> grpc.GenericRpcHandler:
        table: dict[str, tuple[Method, type[Message], type[Message]]] = {
            "ServerLive": (self.server_live, pb.ServerLiveRequest, pb.ServerLiveResponse),
            "ServerReady": (self.server_ready, pb.ServerReadyRequest, pb.ServerReadyResponse),
            "ModelReady": (self.model_ready, pb.ModelReadyRequest, pb.ModelReadyResponse),
            "ServerMetadata": (self.server_metadata, pb.ServerMetadataRequest, pb.ServerMetadataResponse),
            "ModelMetadata": (self.model_metadata, pb.ModelMetadataRequest, pb.ModelMetadataResponse),
            "ModelInfer": (self.model_infer, pb.ModelInferRequest, pb.ModelInferResponse),
            "ModelConfig": (self.model_config, ext.ModelConfigRequest, ext.ModelConfigResponse),
            "ModelStatistics": (self.model_statistics, ext.ModelStatisticsRequest, ext.ModelStatisticsResponse),
            "RepositoryIndex": (self.repository_index, ext.RepositoryIndexRequest, ext.RepositoryIndexResponse),
            "SystemSharedMemoryStatus": (self.shm_status, ext.SystemSharedMemoryStatusRequest, ext.SystemSharedMemoryStatusResponse),
            "SystemSharedMemoryRegister": (self.shm_register, ext.SystemSharedMemoryRegisterRequest, ext.SystemSharedMemoryRegisterResponse),
            "SystemSharedMemoryUnregister": (self.shm_unregister, ext.SystemSharedMemoryUnregisterRequest, ext.SystemSharedMemoryUnregisterResponse),
            "CudaSharedMemoryStatus": (self.cuda_shm_status, ext.CudaSharedMemoryStatusRequest, ext.CudaSharedMemoryStatusResponse),
            "CudaSharedMemoryRegister": (self.cuda_shm_register, ext.CudaSharedMemoryRegisterRequest, ext.CudaSharedMemoryRegisterResponse),
            "CudaSharedMemoryUnregister": (self.cuda_shm_unregister, ext.CudaSharedMemoryUnregisterRequest, ext.CudaSharedMemoryUnregisterResponse),
        }
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                self.wrap(name, method),
                request_deserializer=request_type.FromString,
                response_serializer=_serialize,
            )
            for name, (method, request_type, _response_type) in table.items()
        }
        handlers["ModelStreamInfer"] = grpc.stream_stream_rpc_method_handler(
            StreamInfer(self.pipeline).handle,
            request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=ext.ModelStreamInferResponse.SerializeToString,
        )
        return grpc.method_handlers_generic_handler(SERVICE_NAME, handlers)


def _serialize(reply: Message | bytes) -> bytes:
    # A passthrough reply (forward_grpc) is already serialised.
    return reply if isinstance(reply, bytes) else reply.SerializeToString()


def create_grpc_server(pipeline: Pipeline, settings: ComponentSettings) -> grpc.aio.Server:
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", settings.max_request_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers((GrpcEndpoints(pipeline).generic_handler(),))
    return server
