"""Streaming `multipart/form-data` reader: parts arrive as chunks, never buffered whole."""

import codecs
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.message import Message
from email.utils import collapse_rfc2231_value
from typing import TYPE_CHECKING

from python_multipart.multipart import MultipartParser, parse_options_header

from api.body import checked_content_type
from api.problem_types import UNSUPPORTED_MEDIA_TYPE_DETAIL
from api.problems import ApiProblem, validation_problem

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

MAX_FIELD_BYTES = 4096


def multipart_boundary(content_type: str | None) -> bytes:
    """The boundary of a multipart/form-data body, or a 415/422 problem."""
    media_type, options = parse_options_header(content_type or '')
    if media_type != b'multipart/form-data':
        raise ApiProblem('unsupported_media_type', 415, UNSUPPORTED_MEDIA_TYPE_DETAIL)
    boundary = options.get(b'boundary')
    if not boundary:
        raise validation_problem(['header', 'content-type'], 'multipart boundary is missing')
    return boundary


@dataclass(slots=True)
class _Part:
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    field_name: str | None = None
    filename: str | None = None
    content_type: str | None = None


@dataclass(slots=True)
class _Events:
    """What the push parser reported while one chunk was written to it."""

    parts: list[_Part] = field(default_factory=list)
    data: list[tuple[_Part, bytes]] = field(default_factory=list)
    ended: list[_Part] = field(default_factory=list)
    header_field: bytearray = field(default_factory=bytearray)
    header_value: bytearray = field(default_factory=bytearray)
    finished: bool = False


def _describe(part: _Part) -> None:
    for name, value in part.headers:
        if name.lower() == b'content-disposition':
            # latin-1 keeps every byte as one character: the file name's bytes come back
            # whole, and bytes that are not UTF-8 become lone surrogates, which the name
            # refuses (`invalid_attachment_name`) rather than U+FFFD, under which
            # different names would collide
            message = Message()
            message['content-disposition'] = value.decode('latin-1')
            params = dict(message.get_params(header='content-disposition') or [])
            part.field_name = params.get('name')
            filename = message.get_param('filename', header='content-disposition')
            if isinstance(filename, tuple):  # RFC 2231 (`filename*=`)
                part.filename = _rfc2231_filename(filename)
            elif filename is not None:
                raw = collapse_rfc2231_value(filename).encode('latin-1')
                # stripped once decoded: as latin-1, the last byte of `à` (0xA0) is a space
                part.filename = raw.decode('utf-8', 'surrogateescape').strip()
        elif name.lower() == b'content-type':
            part.content_type = value.decode('latin-1').strip() or None


def _rfc2231_filename(value: tuple[str | None, str | None, str]) -> str:
    """`filename*=charset'language'%XX…`: the bytes decoded by their charset, UTF-8 when
    it is empty or unknown; bytes it cannot decode become lone surrogates, which the name
    refuses, never U+FFFD or latin-1 look-alikes."""
    charset, _language, text = value
    raw = text.encode('latin-1', 'surrogateescape')
    try:
        codec = codecs.lookup(charset or 'utf-8').name
    except LookupError:
        codec = 'utf-8'
    return raw.decode(codec, 'surrogateescape').strip()


class MultipartUpload:
    """Reads a form with an optional `name` field followed by one `file` part.

    `name` must come before `file`; anything after the file part other than the end of
    the form makes the upload invalid, detected before the file is committed.
    """

    def __init__(self, body: AsyncIterator[bytes], boundary: bytes) -> None:
        self._body = body
        self._events = _Events()
        self._current = _Part()
        self._parser = MultipartParser(boundary, self._callbacks())
        self.name_field: str | None = None
        self.file_part: _Part | None = None
        self._name_parts = 0

    def _callbacks(self) -> 'MultipartCallbacks':
        events = self._events

        def on_part_begin() -> None:
            self._current = _Part()

        def on_header_field(data: bytes, start: int, end: int) -> None:
            events.header_field += data[start:end]

        def on_header_value(data: bytes, start: int, end: int) -> None:
            events.header_value += data[start:end]

        def on_header_end() -> None:
            self._current.headers.append((bytes(events.header_field), bytes(events.header_value)))
            events.header_field.clear()
            events.header_value.clear()

        def on_headers_finished() -> None:
            _describe(self._current)
            events.parts.append(self._current)

        def on_part_data(data: bytes, start: int, end: int) -> None:
            events.data.append((self._current, data[start:end]))

        def on_part_end() -> None:
            events.ended.append(self._current)

        def on_end() -> None:
            events.finished = True

        return {
            'on_part_begin': on_part_begin,
            'on_header_field': on_header_field,
            'on_header_value': on_header_value,
            'on_header_end': on_header_end,
            'on_headers_finished': on_headers_finished,
            'on_part_data': on_part_data,
            'on_part_end': on_part_end,
            'on_end': on_end,
        }

    async def _feed(self) -> bool:
        """Write the next body chunk to the parser; False at the end of the body."""
        async for chunk in self._body:
            if chunk:
                try:
                    self._parser.write(chunk)
                except Exception:  # noqa: BLE001 - the parser's errors are all malformed input
                    raise validation_problem(['body'], 'malformed multipart body') from None
                return True
        return False

    async def read_until_file(self) -> _Part:
        """Consume fields up to the start of the `file` part, which it returns."""
        pending_name = bytearray()
        while True:
            self._take_name_field(pending_name)
            file_part = self._take_file_part()
            if file_part is not None:
                self.file_part = file_part
                return file_part
            if self._events.finished or not await self._feed():
                raise validation_problem(['body', 'file'], 'the form has no part named "file"')

    def _take_name_field(self, pending_name: bytearray) -> None:
        events = self._events
        file_data: list[tuple[_Part, bytes]] = []
        for part, data in events.data:
            if part.field_name == 'name':
                pending_name += data
                if len(pending_name) > MAX_FIELD_BYTES:
                    raise validation_problem(['body', 'name'], 'too long')
            elif part.field_name == 'file':
                file_data.append((part, data))
        events.data[:] = file_data
        if any(part.field_name == 'name' for part in events.ended):
            self.name_field = pending_name.decode('utf-8', 'surrogateescape')
        events.ended.clear()

    def _take_file_part(self) -> _Part | None:
        events = self._events
        parts, events.parts = events.parts, []
        for index, part in enumerate(parts):
            if part.field_name == 'file':
                events.parts = parts[index + 1 :]  # whatever follows is checked by file_chunks
                checked_content_type(part.content_type, ['body', 'file'])
                return part
            if part.field_name != 'name':
                raise validation_problem(['body', part.field_name or ''], 'unexpected field')
            if self._name_parts:
                raise validation_problem(['body', 'name'], 'a second "name" field')
            self._name_parts += 1
        return None

    async def file_chunks(self) -> AsyncIterator[bytes]:
        """The content of the `file` part, then a check that the form ends properly."""
        events = self._events
        file_part = self.file_part
        while True:
            for part, data in events.data:
                if part is file_part:
                    yield data
            events.data.clear()
            if events.parts:
                raise validation_problem(['body'], 'nothing may follow the "file" part')
            if events.finished:
                return
            if not await self._feed():
                raise validation_problem(['body'], 'the multipart body ended early')
