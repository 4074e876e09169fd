"""Request bodies as streams."""

from collections.abc import AsyncIterator

from fastapi import Request

from api.problems import validation_problem


def declared_length(request: Request) -> int | None:
    """`Content-Length` when the client sent one (lets a too-large body be refused unread)."""
    raw = request.headers.get('content-length')
    if raw is None:
        return None
    if not raw.isdigit():
        raise validation_problem(['header', 'content-length'], 'not a byte count')
    return int(raw)


def body_stream(request: Request) -> AsyncIterator[bytes]:
    return request.stream()
