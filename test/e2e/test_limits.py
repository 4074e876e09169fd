"""Quota, file size and history encoding limits over real HTTP: refused, and no trace left."""

import os
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from e2e_support import (
    MAX_FILE_BYTES,
    QUOTA_BYTES,
    Caller,
    Json,
    assert_problem,
    blob_area,
    chunked,
    dir_snapshot,
    multipart_body,
    staging_entries,
)

pytestmark = pytest.mark.e2e

BOUNDARY = 'e2e-limits-boundary'
KEEP = os.urandom(5_000)
FILLER_BYTES = 198_000
REMAINING = 5_000


@dataclass
class Loaded:
    """A chat holding `keep.bin`; the workspace has `remaining` bytes of quota left."""

    caller: Caller
    chat: Json
    keep: Json

    @property
    def chat_id(self) -> str:
        return str(self.chat['chat_id'])

    def state(self) -> tuple[dict[str, str], set[str], set[str], int, list[Json], bytes, str]:
        history = self.caller.http.get(f'/v1/chats/{self.chat_id}/history')
        return (
            dir_snapshot(self.caller.chat_dir(self.chat)),
            staging_entries(self.caller.server.data_dir),
            blob_area(self.caller.server.data_dir),
            self.caller.used_bytes(),
            self.caller.files(self.chat_id),
            history.content,
            history.headers['etag'],
        )

    def assert_no_leftovers(self) -> None:
        assert staging_entries(self.caller.server.data_dir) == set()

    def assert_keep_untouched(self) -> None:
        record = self.caller.http.get(f'/v1/chats/{self.chat_id}/files/{self.keep["file_id"]}')
        assert record.json() == self.keep
        assert self.caller.content(self.chat_id, self.keep['file_id']) == KEEP
        assert (self.caller.chat_dir(self.chat) / 'keep.bin').read_bytes() == KEEP


def _loaded(caller: Caller, *, fill: bool) -> Loaded:
    chat = caller.workspace_and_chat()
    keep = caller.stored_file(chat['chat_id'], 'keep.bin', KEEP)
    if fill:
        filled = len(KEEP)
        for i in range(5):
            caller.stored_file(chat['chat_id'], f'fill{i}.bin', b'f' * FILLER_BYTES)
            filled += FILLER_BYTES
        assert caller.used_bytes() == QUOTA_BYTES - REMAINING == filled
    return Loaded(caller, chat, keep)


@pytest.fixture
def nearly_full(caller: Caller) -> Loaded:
    return _loaded(caller, fill=True)


@pytest.fixture
def roomy(caller: Caller) -> Loaded:
    return _loaded(caller, fill=False)


def _body(data: bytes, *, streamed: bool) -> bytes | Iterator[bytes]:
    return chunked(data) if streamed else data


def _upload(
    loaded: Loaded, route: str, name: str, data: bytes, *, streamed: bool
) -> httpx.Response:
    """Upload over one of the two routes, with or without a Content-Length."""
    http = loaded.caller.http
    if route == 'raw':
        response = http.put(
            f'/v1/chats/{loaded.chat_id}/files/by-name/{name}',
            content=_body(data, streamed=streamed),
            headers={'Content-Type': 'application/octet-stream'},
        )
    else:
        form = multipart_body(BOUNDARY, data, filename=name.encode())
        response = http.post(
            f'/v1/chats/{loaded.chat_id}/files',
            content=_body(form, streamed=streamed),
            headers={'Content-Type': f'multipart/form-data; boundary={BOUNDARY}'},
        )
    sent = dict(response.request.headers)
    if streamed:
        assert 'content-length' not in sent
        assert sent['transfer-encoding'] == 'chunked'
    else:
        assert 'content-length' in sent
    return response


ROUTES = ['raw', 'multipart']
FRAMINGS = [pytest.param(False, id='content-length'), pytest.param(True, id='chunked')]


@pytest.mark.parametrize('streamed', FRAMINGS)
@pytest.mark.parametrize('route', ROUTES)
def test_replacing_a_file_over_the_quota_is_413_and_keeps_the_old_file(
    nearly_full: Loaded, route: str, streamed: bool
) -> None:
    before = nearly_full.state()

    response = _upload(
        nearly_full, route, 'keep.bin', os.urandom(len(KEEP) + REMAINING + 1), streamed=streamed
    )

    assert_problem(response, 413, 'workspace_quota_exceeded')
    assert nearly_full.state() == before
    nearly_full.assert_no_leftovers()
    nearly_full.assert_keep_untouched()


@pytest.mark.parametrize('streamed', FRAMINGS)
@pytest.mark.parametrize('route', ROUTES)
def test_a_new_file_over_the_quota_is_413_and_writes_nothing(
    nearly_full: Loaded, route: str, streamed: bool
) -> None:
    before = nearly_full.state()

    response = _upload(nearly_full, route, 'new.bin', b'n' * (REMAINING + 1), streamed=streamed)

    assert_problem(response, 413, 'workspace_quota_exceeded')
    assert nearly_full.state() == before
    nearly_full.assert_no_leftovers()
    assert not (nearly_full.caller.chat_dir(nearly_full.chat) / 'new.bin').exists()


@pytest.mark.parametrize('streamed', FRAMINGS)
@pytest.mark.parametrize('route', ROUTES)
def test_a_file_filling_the_quota_exactly_is_accepted(
    nearly_full: Loaded, route: str, streamed: bool
) -> None:
    response = _upload(nearly_full, route, 'last.bin', b'l' * REMAINING, streamed=streamed)

    assert response.status_code == 201, response.text
    assert nearly_full.caller.used_bytes() == QUOTA_BYTES


@pytest.mark.parametrize('streamed', FRAMINGS)
@pytest.mark.parametrize('route', ROUTES)
def test_an_upload_of_exactly_max_file_bytes_is_accepted(
    roomy: Loaded, route: str, streamed: bool
) -> None:
    response = _upload(roomy, route, 'keep.bin', b'm' * MAX_FILE_BYTES, streamed=streamed)

    # it replaces keep.bin: the raw PUT answers 200, the multipart route 201 (the contract)
    assert response.status_code == (200 if route == 'raw' else 201), response.text
    assert response.json()['size_bytes'] == MAX_FILE_BYTES
    assert roomy.caller.used_bytes() == MAX_FILE_BYTES


@pytest.mark.parametrize('streamed', FRAMINGS)
@pytest.mark.parametrize('route', ROUTES)
def test_an_upload_over_max_file_bytes_is_413_and_keeps_the_old_file(
    roomy: Loaded, route: str, streamed: bool
) -> None:
    before = roomy.state()

    response = _upload(roomy, route, 'keep.bin', os.urandom(MAX_FILE_BYTES + 1), streamed=streamed)

    assert_problem(response, 413, 'file_too_large')
    assert roomy.state() == before
    roomy.assert_no_leftovers()
    roomy.assert_keep_untouched()


@pytest.mark.parametrize('streamed', FRAMINGS)
def test_a_much_larger_upload_is_413_file_too_large(roomy: Loaded, streamed: bool) -> None:
    before = roomy.state()

    response = _upload(roomy, 'raw', 'big.bin', b'b' * (3 * MAX_FILE_BYTES), streamed=streamed)

    assert_problem(response, 413, 'file_too_large')
    assert roomy.state() == before
    roomy.assert_no_leftovers()


@pytest.mark.parametrize('streamed', FRAMINGS)
@pytest.mark.parametrize('method', ['PUT', 'POST'])
def test_history_over_the_quota_is_413_and_unchanged(
    nearly_full: Loaded, method: str, streamed: bool
) -> None:
    before = nearly_full.state()

    response = nearly_full.caller.http.request(
        method,
        f'/v1/chats/{nearly_full.chat_id}/history',
        content=_body(b'h' * (REMAINING + 1), streamed=streamed),
    )

    assert_problem(response, 413, 'workspace_quota_exceeded')
    assert nearly_full.state() == before
    nearly_full.assert_no_leftovers()


@pytest.mark.parametrize(
    'body', [b'\xff\xfe', b'valid start \xc3', b'\xed\xa0\x80 surrogate', b'ok\x80']
)
@pytest.mark.parametrize('method', ['PUT', 'POST'])
def test_history_that_is_not_utf8_is_422_and_unchanged(
    roomy: Loaded, method: str, body: bytes
) -> None:
    roomy.caller.http.put(f'/v1/chats/{roomy.chat_id}/history', content=b'# kept\n')
    before = roomy.state()

    response = roomy.caller.http.request(method, f'/v1/chats/{roomy.chat_id}/history', content=body)

    assert_problem(response, 422, 'invalid_history_encoding')
    assert roomy.state() == before
    roomy.assert_no_leftovers()
    assert roomy.caller.history(roomy.chat_id) == b'# kept\n'


def test_history_with_a_character_split_across_chunks_is_accepted(roomy: Loaded) -> None:
    text = '# é€😀\n'.encode()

    response = roomy.caller.http.put(
        f'/v1/chats/{roomy.chat_id}/history', content=iter([text[:3], text[3:6], text[6:]])
    )

    assert response.status_code == 200, response.text
    assert roomy.caller.history(roomy.chat_id) == text
    assert response.json()['size_bytes'] == len(text)
    assert response.json()['etag'] == response.headers['etag']
