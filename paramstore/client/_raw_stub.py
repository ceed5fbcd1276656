"""The client's stub of the store service: the generated one, with the tensor streams
(Push and Pull) sent and received as bytes framed by hand (``paramstore._piece_wire``)."""

from __future__ import annotations

import grpc

from proto import store_service_pb2 as api
from proto import store_service_pb2_grpc as api_grpc

__all__ = ["RawTensorStoreStub"]


class RawTensorStoreStub(api_grpc.StoreStub):
    """The generated stub, except for the tensor streams (``paramstore._piece_wire``):
    ``Push`` sends messages serialized already, and ``Pull`` yields each response's bytes as
    grpcio received them, for ``parse_pull_response`` to read the weights in place."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        super().__init__(channel)
        self.Push = channel.stream_unary(
            _method_path("Push"),
            request_serializer=None,
            response_deserializer=api.PushResponse.FromString,
        )
        self.Pull = channel.unary_stream(
            _method_path("Pull"),
            request_serializer=api.PullRequest.SerializeToString,
            response_deserializer=None,
        )


def _method_path(name: str) -> str:
    service = api.DESCRIPTOR.services_by_name["Store"]
    return f"/{service.full_name}/{service.methods_by_name[name].name}"
