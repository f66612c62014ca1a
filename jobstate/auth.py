"""Service auth: every RPC but health must carry `authorization: Bearer <JOBSTATE_API_TOKEN>`."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

_OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
Request = TypeVar("Request")
Response = TypeVar("Response")


def _deny_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Awaitable[Any]:
    return context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid service token is required")


async def _deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "a valid service token is required")
    yield  # pragma: no cover - makes this an async generator, like the handler it replaces


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without the bearer token (constant-time compare), health excepted.

    A rejection is a handler of the same kind as the method it replaces (unary, server
    streaming or bidirectional).
    """

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Request, Response] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Request, Response] | None:
        if details.method.startswith(_OPEN_PREFIXES) or self._authorized(details):
            return await continuation(details)
        handler = await continuation(details)
        if handler is None:
            return handler
        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(
                _deny_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(
                _deny_stream,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.unary_unary_rpc_method_handler(
            _deny_unary,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _authorized(self, details: grpc.HandlerCallDetails) -> bool:
        for key, value in details.invocation_metadata or ():
            if key == "authorization":
                presented = value.encode() if isinstance(value, str) else value
                return hmac.compare_digest(presented, self._expected)
        return False
