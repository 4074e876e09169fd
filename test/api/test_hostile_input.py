"""Hostile input, generated: names, cursors, ranges and headers never reach a 500.

Property-based (hypothesis) against the app in-process on a real data directory. Each
property names its oracle: valid names round-trip byte for byte and live only in their
blob and at `<chat dir>/<name>`; invalid ones are a 422 that leaves nothing; cursors are
200 or `422 validation_error`; ranges follow docs/api-notes.md exactly; headers are 401, 412 or
304 as documented.
"""

import base64
import binascii
import hashlib
import json
import os
import unicodedata
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote
from uuid import UUID

import httpx
import pytest
from data_layout import blob_name
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.settings import Settings

USER_A = UUID('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa')

# the metadata store plays no part here: one backend keeps the run short
SETTINGS = hypothesis_settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
# properties whose examples cost several requests each
FEW = hypothesis_settings(SETTINGS, max_examples=15)
MAX_NAME_BYTES = 255
BOUNDARY = 'hostile-boundary-0b9d'
PROBLEM = 'application/problem+json'


@pytest.fixture
def backend_name() -> str:
    return 'sqlite'


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    # room for an upload larger than the JSON body limit
    return make_settings(max_file_bytes=200_000, default_quota_bytes=1_000_000)


def _chat_dir(data_dir: Path, chat_id: str) -> Path:
    (found,) = (data_dir / 'workspaces').glob(f'*/chats/{chat_id}')
    return found


def _problem_code(response: httpx.Response) -> str:
    assert response.headers['content-type'] == PROBLEM, response.text
    body = response.json()
    assert body['status'] == response.status_code
    return str(body['code'])


def _regular_files(data_dir: Path) -> dict[Path, bytes]:
    """Every regular file under the data directory except the metadata database (at its
    top; an attachment may well be called `metadata.db`)."""
    return {
        path: path.read_bytes()
        for path in data_dir.rglob('*')
        if path.is_file()
        and not path.is_symlink()
        and not (path.parent == data_dir and path.name.startswith('metadata.db'))
    }


async def _state(
    client: httpx.AsyncClient, data_dir: Path, chat_id: str
) -> tuple[object, object, dict[Path, bytes]]:
    files = (await client.get(f'/v1/chats/{chat_id}/files', params={'limit': 200})).json()
    usage = (await client.get('/v1/workspace/usage')).json()['used_bytes']
    return files, usage, _regular_files(data_dir)


# --- attachment names ----------------------------------------------------------------------


def expected_refusal(name: str) -> str | None:
    """The oracle, straight from the contract's table: the code a name is refused with."""
    if not name or name in {'.', '..'} or '/' in name or '\\' in name:
        return 'invalid_attachment_name'
    if any(unicodedata.category(ch) == 'Cc' for ch in name):
        return 'invalid_attachment_name'
    if len(name.encode('utf-8')) > MAX_NAME_BYTES:
        return 'invalid_attachment_name'
    if name == 'history.md':
        return 'reserved_attachment_name'
    return None


def _padded(stem: str, unit: str, total_bytes: int) -> str:
    """`stem` followed by `unit` repeated to about `total_bytes` UTF-8 bytes."""
    name = stem
    while len((name + unit).encode()) <= total_bytes:
        name += unit
    return name


# surrogates cannot be sent as UTF-8 at all; everything else may appear
NAME_CHARS = st.characters(exclude_categories=['Cs'])
TRICKY = st.sampled_from(
    [
        '.',
        '..',
        '/',
        '\\',
        '\x00',
        '\n',
        '\r',
        '\t',
        '\x7f',
        '\x85',
        '\u200f',  # right-to-left mark
        '\u202e',  # right-to-left override
        '\u200b',  # zero-width space
        '\ufeff',
        'e\u0301',  # NFD é
        '\u00e9',  # NFC é
        '\u212b',  # angstrom sign (NFC: Å)
        '%2F',
        '~',
        ' ',
        'history.md',
        'HISTORY.md',
        '.blobs',
        'tmp',
    ]
)
NAMES = st.one_of(
    st.text(NAME_CHARS, min_size=0, max_size=40),
    st.lists(st.one_of(TRICKY, st.text(NAME_CHARS, max_size=3)), max_size=6).map(''.join),
    st.builds(
        _padded,
        st.text(NAME_CHARS, max_size=4),
        st.sampled_from(['a', 'é', '€', '😀', '\u200f']),
        st.sampled_from([254, 255, 256, 257]),
    ),
)


async def _upload(
    client: httpx.AsyncClient, chat_id: str, route: str, name: str, content: bytes
) -> httpx.Response:
    if route == 'raw':
        url = httpx.URL(f'http://testserver/v1/chats/{chat_id}/files/by-name/')
        # every byte but letters and digits escaped: `.`/`..` must not be read as dot segments
        escaped = quote(name, safe='').replace('.', '%2E')
        url = url.copy_with(raw_path=url.raw_path + escaped.encode())
        return await client.put(url, content=content)
    boundary = BOUNDARY.encode()
    body = (
        b'--' + boundary + b'\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
        + name.encode()
        + b'\r\n--' + boundary
        + b'\r\nContent-Disposition: form-data; name="file"; filename="ignored.bin"\r\n'
        + b'Content-Type: application/octet-stream\r\n\r\n'
        + content
        + b'\r\n--' + boundary + b'--\r\n'
    )  # fmt: skip
    return await client.post(
        f'/v1/chats/{chat_id}/files',
        content=body,
        headers={'Content-Type': f'multipart/form-data; boundary={BOUNDARY}'},
    )


@SETTINGS
@given(name=NAMES, route=st.sampled_from(['raw', 'multipart']), salt=st.binary(min_size=8))
@example(name='é' * 127 + 'n', route='raw', salt=b'255bytes').via('255 bytes')
@example(name='é' * 128, route='raw', salt=b'256bytes').via('256 bytes')
@example(name='a\x00b', route='multipart', salt=b'nul-byte').via('NUL')
@example(name='..', route='raw', salt=b'dot--dot').via('dot dot')
@example(name='metadata.db', route='raw', salt=b'db-named').via('named like the database')
async def test_a_valid_name_round_trips_exactly_and_an_invalid_one_leaves_nothing(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path, name: str, route: str, salt: bytes
) -> None:
    content = b'content of ' + salt
    before = await _state(client, data_dir, chat_id)

    response = await _upload(client, chat_id, route, name, content)

    refusal = expected_refusal(name)
    if refusal is not None:
        assert response.status_code == 422, response.text
        assert _problem_code(response) == refusal
        assert await _state(client, data_dir, chat_id) == before
        return
    assert response.status_code == 201, response.text
    record = response.json()
    try:
        assert record['name'] == name
        assert record['sha256'] == hashlib.sha256(content).hexdigest()
        download = await client.get(f'/v1/chats/{chat_id}/files/{record["file_id"]}/content')
        assert download.content == content
        chat_dir = _chat_dir(data_dir, chat_id)
        # the one new file anywhere under the data directory: its blob, shown in the chat
        # directory as a hard link named exactly as given
        blob = data_dir / '.blobs' / blob_name(record['file_id'])
        new = {
            p for p, b in _regular_files(data_dir).items() if b == content and p not in before[2]
        }
        assert sorted(new) == sorted([blob, chat_dir / name])
        assert (chat_dir / name).samefile(blob)
        assert name.encode() in os.listdir(bytes(chat_dir))  # noqa: PTH208 - raw bytes
    finally:
        await client.delete(f'/v1/chats/{chat_id}/files/{record["file_id"]}')


@FEW
@given(name=NAMES.filter(lambda n: expected_refusal(n) is None and n.swapcase() != n))
@example(name='Readme.TXT')
async def test_names_differing_only_in_case_are_two_files(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path, name: str
) -> None:
    await _assert_two_files(client, chat_id, data_dir, name, name.swapcase())


def _differs_by_normalisation(name: str) -> bool:
    nfc, nfd = unicodedata.normalize('NFC', name), unicodedata.normalize('NFD', name)
    return nfc != nfd and expected_refusal(nfc) is None and expected_refusal(nfd) is None


@FEW
@given(name=NAMES.filter(_differs_by_normalisation))
@example(name='café.txt')
async def test_nfc_and_nfd_forms_of_a_name_are_two_files(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path, name: str
) -> None:
    nfc, nfd = unicodedata.normalize('NFC', name), unicodedata.normalize('NFD', name)
    await _assert_two_files(client, chat_id, data_dir, nfc, nfd)


async def _assert_two_files(
    client: httpx.AsyncClient, chat_id: str, data_dir: Path, first: str, second: str
) -> None:
    one = await _upload(client, chat_id, 'raw', first, b'first')
    two = await _upload(client, chat_id, 'raw', second, b'second')
    try:
        assert (one.status_code, two.status_code) == (201, 201), (one.text, two.text)
        assert one.json()['file_id'] != two.json()['file_id']
        chat_dir = _chat_dir(data_dir, chat_id)
        assert (chat_dir / first).read_bytes() == b'first'
        assert (chat_dir / second).read_bytes() == b'second'
        listed = (await client.get(f'/v1/chats/{chat_id}/files')).json()['items']
        assert sorted(item['name'] for item in listed) == sorted([first, second])
    finally:
        await client.delete(f'/v1/chats/{chat_id}/files')


# --- cursors -----------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip('=')


def cursor_is_ours(cursor: str, list_name: str) -> bool:
    """The oracle: base64url of a JSON triple [the list's name, aware ISO time, UUID], as
    the API writes it for this list ('chats', or the chat id of a file list)."""
    if len(cursor) > 512:
        return False
    try:
        raw = base64.urlsafe_b64decode((cursor + '=' * (-len(cursor) % 4)).encode('ascii'))
        triple = json.loads(raw)
        if not isinstance(triple, list) or len(triple) != 3:
            return False
        if not all(isinstance(part, str) for part in triple):
            return False
        if triple[0] != list_name:
            return False
        pair = triple[1:]
        moment = datetime.fromisoformat(pair[0])
        UUID(pair[1])
        # aware, and a real instant in UTC (an offset may push it past year 1 or 9999)
        return moment.tzinfo is not None and moment.astimezone(UTC).year > 0
    except (ValueError, TypeError, OverflowError, UnicodeError, binascii.Error, RecursionError):
        return False


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=6,
)
MOMENTS = st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
CURSORS = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=60).map(_b64),
    JSON_VALUES.map(lambda v: _b64(json.dumps(v).encode())),
    # encoded in the test, where '<chat>' becomes the chat's id
    st.tuples(
        st.sampled_from(['chats', '<chat>']) | JSON_VALUES,
        MOMENTS | JSON_VALUES,
        st.uuids().map(str) | JSON_VALUES,
    ),
    st.text(alphabet='A', min_size=500, max_size=600),
)
_UUID_A = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa'


@SETTINGS
@given(cursor=CURSORS, files=st.booleans())
@example(cursor=('chats', '2020-01-01T00:00:00+00:00', 5), files=False).via('uuid not a str')
@example(cursor=('<chat>', '9999-12-31T23:59:59-23:59', _UUID_A), files=True).via(
    'offset past year 9999'
)
@example(cursor=('chats', '2020-01-01T00:00:00+00:00', _UUID_A), files=True).via(
    "the chat list's cursor on a file list"
)
@example(cursor=('<chat>', '2020-01-01T00:00:00+00:00', _UUID_A), files=False).via(
    "a file list's cursor on the chat list"
)
@example(cursor=_b64(b'[' * 300 + b']' * 300), files=False).via('deep nesting')
async def test_a_cursor_is_a_page_or_a_validation_error_never_a_500(
    client: httpx.AsyncClient, chat_id: str, cursor: str | tuple[object, ...], files: bool
) -> None:
    path = f'/v1/chats/{chat_id}/files' if files else '/v1/chats'
    if isinstance(cursor, tuple):
        parts = [chat_id if part == '<chat>' else part for part in cursor]
        cursor = _b64(json.dumps(parts).encode())

    response = await client.get(path, params={'cursor': cursor})

    if cursor_is_ours(cursor, chat_id if files else 'chats'):
        assert response.status_code == 200, response.text
        return
    assert response.status_code == 422, response.text
    assert _problem_code(response) == 'validation_error'
    assert ['query', 'cursor'] in [error['loc'] for error in response.json()['errors']]


# --- ranges --------------------------------------------------------------------------------

FILE_BYTES = bytes(range(256)) * 4  # 1024 distinct-enough bytes


def expected_range(header: str, size: int) -> tuple[int, int] | str | None:
    """The oracle of docs/api-notes.md: (first, last), 'unsatisfiable', or None (whole).

    Written from RFC 9110 section 14.1.2 for a single range, not from the service's code.
    """
    unit, equals, spec = header.strip().partition('=')
    bounds = spec.strip().split('-')
    digits = set('0123456789')
    if (
        not equals
        or unit.strip().lower() != 'bytes'
        or len(bounds) != 2
        or not set(''.join(bounds)) <= digits
        or bounds == ['', '']
    ):
        return None
    first, last = (int(bound) if bound else None for bound in bounds)
    if first is None:
        assert last is not None
        return 'unsatisfiable' if last == 0 or size == 0 else (max(0, size - last), size - 1)
    if first >= size:
        return 'unsatisfiable'
    end = size - 1 if last is None else min(last, size - 1)
    return None if last is not None and last < first else (first, end)


NUMBERS = st.one_of(
    st.integers(min_value=-5, max_value=2100),
    st.integers(min_value=0, max_value=10**30),
    st.sampled_from([0, 1, 1023, 1024, 1025]),
).map(str)
RANGE_HEADERS = st.one_of(
    st.builds(lambda a, b: f'bytes={a}-{b}', NUMBERS | st.just(''), NUMBERS | st.just('')),
    st.builds(lambda parts: 'bytes=' + ','.join(parts), st.lists(NUMBERS, max_size=3)),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
    st.text(alphabet='bytes=-0123456789, ', max_size=20),
)


@pytest.fixture
async def stored_file(client: httpx.AsyncClient, chat_id: str) -> str:
    response = await client.put(f'/v1/chats/{chat_id}/files/by-name/r.bin', content=FILE_BYTES)
    assert response.status_code == 201, response.text
    return f'/v1/chats/{chat_id}/files/{response.json()["file_id"]}/content'


@SETTINGS
@given(header=RANGE_HEADERS)
@example(header='bytes=0-0')
@example(header='bytes=-1')
@example(header='bytes=1024-')
@example(header='bytes=1_0-2_0')
@example(header='bytes=+1-2')
@example(header='bytes= 1 - 2')
async def test_a_range_header_gives_200_206_or_416_with_the_right_bytes(
    client: httpx.AsyncClient, stored_file: str, header: str
) -> None:
    response = await client.get(stored_file, headers={'Range': header})

    size = len(FILE_BYTES)
    expected = expected_range(header, size)
    if expected is None:
        assert response.status_code == 200, response.text
        assert response.content == FILE_BYTES
    elif isinstance(expected, str):
        assert response.status_code == 416, response.text
        assert _problem_code(response) == 'range_not_satisfiable'
        assert response.headers['content-range'] == f'bytes */{size}'
    else:
        first, last = expected
        assert response.status_code == 206, response.text
        assert response.headers['content-range'] == f'bytes {first}-{last}/{size}'
        assert response.content == FILE_BYTES[first : last + 1]
        assert response.headers['content-length'] == str(last - first + 1)


# --- headers -------------------------------------------------------------------------------

HEADER_TEXT = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
    st.lists(
        st.one_of(
            st.just('*'),
            st.text(alphabet='0123456789-', max_size=8).map(lambda t: f'"{t}"'),
            st.text(alphabet='0123456789-', max_size=8).map(lambda t: f'W/"{t}"'),
        ),
        max_size=4,
    ).map(', '.join),
)


def _etags(header: str, *, weak: bool) -> set[str] | None:
    """The oracle of RFC 9110 entity-tag lists as docs/api-notes.md applies them."""
    if header.strip() == '*':
        return None
    tags = set()
    for raw in header.split(','):
        item = raw.strip()
        if item.startswith('W/'):
            if not weak:
                continue
            item = item[2:]
        if len(item) >= 2 and item[0] == item[-1] == '"':
            tags.add(item[1:-1])
    return tags


@SETTINGS
@given(if_match=HEADER_TEXT, salt=st.binary(max_size=8))
@example(if_match='*', salt=b'')
async def test_if_match_garbage_is_applied_or_412_never_a_500(
    client: httpx.AsyncClient, chat_id: str, if_match: str, salt: bytes
) -> None:
    path = f'/v1/chats/{chat_id}/history'
    current = (await client.get(path)).headers['etag']
    tags = _etags(if_match, weak=False)
    applies = tags is None or current.strip('"') in tags
    body = b'# v ' + salt.hex().encode()

    response = await client.put(path, content=body, headers={'If-Match': if_match})

    if applies:
        assert response.status_code == 200, response.text
        assert (await client.get(path)).content == body
    else:
        assert response.status_code == 412, response.text
        assert _problem_code(response) == 'precondition_failed'
        assert (await client.get(path)).headers['etag'] == current


@FEW
@given(if_none_match=HEADER_TEXT)
async def test_if_none_match_garbage_is_200_or_304_never_a_500(
    client: httpx.AsyncClient, chat_id: str, stored_file: str, if_none_match: str
) -> None:
    for path in (f'/v1/chats/{chat_id}/history', stored_file):
        current = (await client.get(path)).headers['etag'].strip('"')
        tags = _etags(if_none_match, weak=True)
        matches = tags is None or current in tags

        response = await client.get(path, headers={'If-None-Match': if_none_match})

        assert response.status_code == (304 if matches else 200), response.text
        assert response.content == (b'' if matches else (await client.get(path)).content)


def _is_uuid(value: str) -> bool:
    """The oracle: one UUID as `str(UUID)` writes it (8-4-4-4-12 hex digits), any case;
    `{…}`, `urn:uuid:…`, bare hex and padding are other spellings, refused."""
    groups = value.split('-')
    hex_digits = set('0123456789abcdefABCDEF')
    return [len(group) for group in groups] == [8, 4, 4, 4, 12] and all(
        set(group) <= hex_digits for group in groups
    )


USER_IDS = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=50),
    st.uuids().map(lambda u: str(u).upper()),
    st.uuids().map(lambda u: u.hex),
    st.uuids().map(lambda u: '{' + str(u) + '}'),
    st.uuids().map(lambda u: str(u)[:-1]),
    st.uuids().map(lambda u: f' {u} '),
)


@SETTINGS
@given(user_id=USER_IDS)
@example(user_id='').via('empty')
@example(user_id=str(USER_A)[:-1] + 'z').via('one character off')
async def test_x_user_id_garbage_is_401_and_a_uuid_is_a_caller(
    client: httpx.AsyncClient, chat_id: str, user_id: str
) -> None:
    response = await client.get(f'/v1/chats/{chat_id}', headers={'X-User-Id': user_id})

    if user_id and _is_uuid(user_id):
        # a well-formed id of a caller without a workspace: it sees nothing of user A
        assert response.status_code in {200, 404}, response.text
        if UUID(user_id) != USER_A:
            assert response.status_code == 404
            assert _problem_code(response) == 'workspace_not_found'
        return
    assert response.status_code == 401, response.text
    assert _problem_code(response) == 'unauthenticated'
    # a fixed sentence: the header's value is never echoed back
    assert response.json()['detail'] in {
        'The X-User-Id header is required.',
        'X-User-Id must be one UUID (8-4-4-4-12 hex digits).',
    }


# --- oversized JSON bodies -------------------------------------------------------------------

TEN_MB = 10 * 1024 * 1024


async def test_a_10_mb_json_body_is_413_before_it_is_read(client: httpx.AsyncClient) -> None:
    assert (await client.put('/v1/workspace')).status_code in {200, 201}
    body = b'{"title": "' + b'x' * TEN_MB + b'"}'

    response = await client.post(
        '/v1/chats', content=body, headers={'Content-Type': 'application/json'}
    )

    assert response.status_code == 413, response.text
    assert _problem_code(response) == 'request_too_large'
    assert (await client.get('/v1/chats')).json()['items'] == []


class CountingBody:
    """A 10 MB chunked body that counts how much of it the server pulled."""

    def __init__(self) -> None:
        self.pulled = 0
        self.pulled_when_answered: int | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(TEN_MB // 65536):
            self.pulled += 65536
            yield b'x' * 65536


def _noting_the_answer(app: ASGIApp, body: CountingBody) -> ASGIApp:
    """The app, with how much of `body` it had pulled when its answer started."""

    async def noting(scope: Scope, receive: Receive, send: Send) -> None:
        async def noting_send(message: Message) -> None:
            if message['type'] == 'http.response.start':
                body.pulled_when_answered = body.pulled
            await send(message)

        await app(scope, receive, noting_send)

    return noting


@pytest.mark.parametrize(
    ('method', 'path'),
    [('POST', '/v1/chats'), ('PATCH', '/v1/chats/{chat}'), ('PUT', '/v1/chats/{chat}/sandbox')],
)
async def test_a_streamed_oversized_json_body_is_refused_without_reading_it_all(
    client: httpx.AsyncClient, chat_id: str, method: str, path: str
) -> None:
    body = CountingBody()
    before = (await client.get(f'/v1/chats/{chat_id}')).json()
    app = client._transport.app  # type: ignore[attr-defined]
    transport = httpx.ASGITransport(app=_noting_the_answer(app, body))

    async with httpx.AsyncClient(
        transport=transport, base_url=client.base_url, headers=client.headers
    ) as noted:
        response = await noted.request(
            method,
            path.format(chat=chat_id),
            content=body,
            headers={'Content-Type': 'application/json'},
        )

    assert response.status_code == 413, response.text
    assert _problem_code(response) == 'request_too_large'
    # the limit (64 KiB) and one chunk, not 10 MB; api/drain.py reads on after the answer
    assert body.pulled_when_answered is not None
    assert body.pulled_when_answered <= 128 * 1024
    assert (await client.get(f'/v1/chats/{chat_id}')).json() == before
    assert (await client.get(f'/v1/chats/{chat_id}/sandbox')).status_code == 404


async def test_json_bodies_under_the_limit_still_parse(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    padded = b'{"title": "t"' + b' ' * 60_000 + b'}'

    response = await client.patch(
        f'/v1/chats/{chat_id}', content=padded, headers={'Content-Type': 'application/json'}
    )

    assert response.status_code == 200, response.text
    assert response.json()['title'] == 't'


async def test_uploads_are_not_held_to_the_json_limit(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    """A JSON *file* is content: the upload routes keep their own, larger limits."""
    content = b'[' + b'0,' * 50_000 + b'0]'  # 100 KB: over the JSON limit, under max_file_bytes

    response = await client.put(
        f'/v1/chats/{chat_id}/files/by-name/data.json',
        content=content,
        headers={'Content-Type': 'application/json'},
    )

    assert response.status_code == 201, response.text
    assert response.json()['size_bytes'] == len(content)
