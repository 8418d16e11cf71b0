"""gRPC server reflection under both of its names.

grpcio-reflection serves ``grpc.reflection.v1alpha.ServerReflection``;
newer clients (grpcurl, Postman, gRPC UI) ask ``grpc.reflection.v1`` first.
The two protocols are the same messages in another package, so the v1
service is the same servicer registered under the second name. Both sit
behind the node's authorization like every other service (node.auth).
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1_SERVICE = "grpc.reflection.v1.ServerReflection"


def enable_reflection(services: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection of ``services`` (and of itself) as v1alpha and v1."""
    names = (*services, reflection.SERVICE_NAME, V1_SERVICE)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    v1 = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(V1_SERVICE, {"ServerReflectionInfo": v1}),))
