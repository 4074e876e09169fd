"""Small HTTP codecs: opaque cursors, entity tags, byte ranges, Content-Disposition, paths."""

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote
from uuid import UUID

from fastapi import Request, Response
from pydantic import BaseModel

from api.problems import ApiProblem, validation_problem
from domain.content import ByteRange
from domain.page import PageKey

# `bytes=first-last`, `bytes=first-`, `bytes=-suffix`: digits only (no sign, `_` or space)
_ONE_BYTE_RANGE = re.compile(r'\s*bytes\s*=\s*([0-9]*)-([0-9]*)\s*', re.IGNORECASE)


def path_in_app(request: Request, route_path: str, **params: object) -> str:
    """`route_path` (a route's path with its router's prefix) filled in with `params`,
    under the app's root path: what `request.url_for(name, **params).path` gives for a
    route with plain parameters, without looking the route up by its name and building
    an absolute URL first, which cost an eighth of a chat create's CPU (ADR 019)."""
    scope = request.scope
    # as Starlette's `base_url`: the app's root path, also when mounted below another
    root: str = scope.get('app_root_path', scope.get('root_path', ''))
    return root.rstrip('/') + route_path.format_map({k: str(v) for k, v in params.items()})


# what a cursor belongs to: the chat list, or the file list of one chat (its id)
CHAT_LIST = 'chats'


def encode_cursor(key: PageKey | None, list_name: str) -> str | None:
    """An opaque cursor for the page after `key` of the list `list_name`."""
    if key is None:
        return None
    raw = json.dumps(
        [list_name, key.created_at.isoformat(), str(key.item_id)], separators=(',', ':')
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip('=')


def decode_cursor(cursor: str | None, list_name: str) -> PageKey | None:
    """The position a cursor names; a cursor that does not decode to a position in this
    list (damaged, or made for another list, whose positions would skip or repeat items
    of this one) is a validation error. Cursors are not signed: one built by hand in this
    format is a position like any other."""
    if cursor is None:
        return None
    try:
        padded = cursor + '=' * (-len(cursor) % 4)
        return _page_key(json.loads(base64.urlsafe_b64decode(padded.encode('ascii'))), list_name)
    except (ValueError, TypeError, OverflowError, binascii.Error, RecursionError):
        raise validation_problem(['query', 'cursor'], 'not a cursor of this list') from None


def _page_key(decoded: object, list_name: str) -> PageKey:
    """Exactly what `encode_cursor` writes for this list: its name, an aware time and a
    UUID, as strings."""
    if not isinstance(decoded, list) or len(decoded) != 3:  # noqa: PLR2004
        raise TypeError('not a triple')
    decoded_list, created_text, item_text = decoded
    if decoded_list != list_name:
        raise ValueError('a cursor of another list')
    if not isinstance(created_text, str) or not isinstance(item_text, str):
        raise TypeError('not two strings')
    created_at = datetime.fromisoformat(created_text)
    if created_at.tzinfo is None:
        raise ValueError('naive time')
    # a far offset near year 1 or 9999 cannot be converted: refused here, not in a query
    return PageKey(created_at.astimezone(UTC), UUID(item_text))


@dataclass(frozen=True, slots=True)
class Conditions:
    """The fields of a conditional or ranged read as sent; None where absent."""

    if_match: str | None = None
    if_none_match: str | None = None
    range: str | None = None
    if_range: str | None = None


NO_CONDITIONS = Conditions()
_CONDITION_FIELDS = frozenset({b'if-match', b'if-none-match', b'range', b'if-range'})


def conditions_of(request: Request) -> Conditions:
    """The conditional fields of a read, in one pass over the raw header list: declared
    as FastAPI `Header` parameters, each would cost the hot read routes a lookup on every
    request (ADR 019); most requests send none of them. Several lines of one field are
    one comma-separated list (RFC 9110 5.3): FastAPI's `Header` would see the first only."""
    found: dict[bytes, str] | None = None
    for name, value in request.scope['headers']:
        if name in _CONDITION_FIELDS:
            if found is None:
                found = {}
            text = value.decode('latin-1')
            earlier = found.get(name)
            found[name] = text if earlier is None else f'{earlier}, {text}'
    if found is None:
        return NO_CONDITIONS
    return Conditions(
        if_match=found.get(b'if-match'),
        if_none_match=found.get(b'if-none-match'),
        range=found.get(b'range'),
        if_range=found.get(b'if-range'),
    )


def field_value(request: Request, name: str) -> str | None:
    """All lines of one list-valued header field as one value (RFC 9110 5.3); None when
    absent."""
    lines = request.headers.getlist(name)
    return ', '.join(lines) if lines else None


def quote_etag(opaque: str) -> str:
    return f'"{opaque}"'


def parse_etags(header: str | None, *, weak: bool) -> set[str] | None:
    """The opaque tags of an `If-Match`/`If-None-Match` header; None when absent or `*`.

    `weak=False` (If-Match) drops weak tags: they never match strongly.
    """
    if header is None or header.strip() == '*':
        return None
    tags: set[str] = set()
    for raw_item in header.split(','):
        item = raw_item.strip()
        if item.startswith('W/'):
            if not weak:
                continue
            item = item[2:]
        if len(item) >= 2 and item[0] == item[-1] == '"':  # noqa: PLR2004
            tags.add(item[1:-1])
    return tags


def precondition_failed(if_match: str | None, opaque: str) -> bool:
    """Whether `If-Match` names none of the current representation (412, RFC 9110 13.1.1):
    `*` matches whatever is current; weak tags never match (strong comparison)."""
    if if_match is None or if_match.strip() == '*':
        return False
    tags = parse_etags(if_match, weak=False)
    return tags is None or opaque not in tags


def range_applies(if_range: str | None, opaque: str) -> bool:
    """Whether a `Range` is to be served (RFC 9110 13.1.5): always without `If-Range`,
    else only when it is the current strong ETag. A weak tag never matches, and neither
    does a date: no `Last-Modified` is sent, so a client has none to send back."""
    return if_range is None or if_range.strip() == quote_etag(opaque)


def not_modified(if_none_match: str | None, opaque: str) -> bool:
    """Whether `If-None-Match` names the current representation (304)."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == '*':
        return True
    tags = parse_etags(if_none_match, weak=True)
    return tags is not None and opaque in tags


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range asked for, None to send the whole file.

    Headers that are not one `bytes=` range of ASCII digits are ignored (RFC 9110 allows
    it); a range that starts past the end of the file, or `-0`, is
    `range_not_satisfiable`; a suffix range of an empty file is the whole file.
    """
    match = None if header is None else _ONE_BYTE_RANGE.fullmatch(header)
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text:
            return None
        suffix = int(last_text)
        if suffix == 0:
            raise _unsatisfiable(size)
        if size == 0:
            # satisfiable (RFC 9110 14.1.1: a non-zero suffix), but a range of no bytes
            # cannot be written in a `Content-Range`: the whole, empty file
            return None
        return ByteRange(max(0, size - suffix), size - 1)
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if first >= size:
        raise _unsatisfiable(size)
    if last < first:
        return None
    return ByteRange(first, min(last, size - 1))


def _unsatisfiable(size: int) -> ApiProblem:
    return ApiProblem(
        'range_not_satisfiable',
        416,
        f'The file has {size} bytes; the range asked for lies outside it.',
        headers={'Content-Range': f'bytes */{size}'},
    )


def content_disposition(name: str) -> str:
    """`attachment` always, so that a browser never renders stored content inline."""
    ascii_fallback = ''.join(
        ch if ch.isascii() and ch.isprintable() and ch not in '"\\' else '_' for ch in name
    )
    return f'attachment; filename="{ascii_fallback}"; filename*=UTF-8\'\'{quote(name, safe="")}'


def json_response(model: BaseModel, status_code: int = 200) -> Response:
    """`model` as FastAPI sends a `response_model` (same bytes and headers), serialised once.

    FastAPI validates a returned model against the `response_model` again before it
    serialises it; hot routes return this instead and keep `response_model` for the
    OpenAPI document (ADR 019).
    """
    body = model.__pydantic_serializer__.to_json(model, by_alias=True)
    return json_body_response(body, status_code)


def json_body_response(body: bytes, status_code: int = 200) -> Response:
    """A JSON body already written, with the headers `json_response` sends."""
    return Response(body, status_code=status_code, media_type='application/json')
