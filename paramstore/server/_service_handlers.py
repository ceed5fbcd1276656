"""Registering a gRPC servicer as the generated ``add_*Servicer_to_server`` does, except
that chosen methods hand their requests over, or send their responses, as bytes: the
tensor streams the store frames and reads by hand (``paramstore._piece_wire``)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

__all__ = ["add_servicer"]

_HANDLER_OF_KIND: dict[tuple[bool, bool], Callable[..., grpc.RpcMethodHandler]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_servicer(
    server: grpc.aio.Server,
    servicer: Any,
    service: ServiceDescriptor,
    *,
    raw_requests: Collection[str] = (),
    raw_responses: Collection[str] = (),
) -> None:
    """Serve every method of ``service`` on ``server`` with ``servicer``'s method of its name;
    the methods named in ``raw_requests`` get their requests as the bytes received, those in
    ``raw_responses`` send their responses as the bytes they are."""
    unknown = (set(raw_requests) | set(raw_responses)) - set(service.methods_by_name)
    if unknown:
        raise ValueError(f"service {service.full_name} has no method(s) {sorted(unknown)}")
    handlers = {
        method.name: _handler(
            servicer,
            method,
            raw_request=method.name in raw_requests,
            raw_response=method.name in raw_responses,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


def _handler(
    servicer: Any, method: MethodDescriptor, *, raw_request: bool, raw_response: bool
) -> grpc.RpcMethodHandler:
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    make = _HANDLER_OF_KIND[(method.client_streaming, method.server_streaming)]
    return make(
        getattr(servicer, method.name),
        request_deserializer=None if raw_request else request_class.FromString,
        response_serializer=None if raw_response else response_class.SerializeToString,
    )
