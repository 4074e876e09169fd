"""Chat export and signed download links, over real HTTP against a real server."""

import functools
import hashlib
import io
import json
import random
import socket
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from e2e_support import (
    HTTP_TIMEOUT,
    Caller,
    MakeServer,
    ServerProcess,
    assert_problem,
    blob_path,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.e2e

LINK_SECRET = 'e2e-link-secret-0123456789abcdef0123'
GATEWAY_TOKEN = 'e2e-gateway-token'
MIB = 1024 * 1024


def unzip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


def drain(chunks: Iterator[bytes], into: bytearray) -> None:
    for chunk in chunks:
        into += chunk


# --- export ----------------------------------------------------------------------------


def test_export_streams_a_zip_of_history_and_files(caller: Caller) -> None:
    chat = caller.workspace_and_chat()
    chat_id = chat['chat_id']
    caller.http.put(f'/v1/chats/{chat_id}/history', content='# Plan ✓\n'.encode())
    files = {'data.csv': b'a,b\n1,2\n', 'Grüße 東京.txt': 'ü'.encode(), 'empty': b''}
    for name, content in files.items():
        caller.stored_file(chat_id, quote(name, safe=''), content)

    with caller.http.stream('GET', f'/v1/chats/{chat_id}/export') as response:
        pieces = list(response.iter_bytes())

    assert response.status_code == 200
    assert response.headers['content-type'] == 'application/zip'
    assert response.headers['x-content-type-options'] == 'nosniff'
    assert response.headers['transfer-encoding'] == 'chunked'
    assert "filename*=UTF-8''chat.zip" in response.headers['content-disposition']
    assert unzip(b''.join(pieces)) == {'history.md': '# Plan ✓\n'.encode(), **files}


def test_export_of_another_users_chat_is_not_found(
    caller: Caller, make_caller: Callable[[], Caller]
) -> None:
    chat = caller.workspace_and_chat()
    other = make_caller()
    other.workspace()

    response = other.http.get(f'/v1/chats/{chat["chat_id"]}/export')

    assert_problem(response, 404, 'chat_not_found')


def _log_entries(server: ServerProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in server.stderr().splitlines() if line.strip()]


def _metric(server: ServerProcess, name: str, **labels: str) -> float:
    text = httpx.get(f'{server.base_url}/metrics', timeout=10).text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


CUT_SHORT_ID = 'e2e-export-cut-short'


def _slow_reader(server: ServerProcess, caller: Caller, request_id: str) -> httpx.Client:
    """A client with a fixed small receive buffer (no autotuning): with the server's send
    buffer (at most 4 MiB here) and one 1 MiB read in flight, far less than a 16 MiB file
    is ahead of it, so the server is still on that file when the client pauses."""
    return httpx.Client(
        base_url=server.base_url,
        headers={**caller.http.headers, 'X-Request-Id': request_id},
        timeout=HTTP_TIMEOUT,
        transport=httpx.HTTPTransport(
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)]
        ),
    )


ROOMY = {'STORAGE_MAX_FILE_BYTES': str(64 * MIB), 'STORAGE_DEFAULT_QUOTA_BYTES': str(256 * MIB)}
BIG = bytes(range(256)) * (64 * 1024)  # 16 MiB


def test_a_file_replaced_during_the_export_is_sent_as_listed(make_server: MakeServer) -> None:
    """The listing names immutable blobs: a write during the export releases the old blob,
    which outlives the export by the grace period."""
    server = make_server('sqlite', extra_env=ROOMY)
    caller = Caller(server)
    try:
        chat_id = caller.workspace_and_chat()['chat_id']
        caller.stored_file(chat_id, 'big.bin', BIG)
        caller.stored_file(chat_id, 'small.txt', b's' * 1000)
        received = bytearray()
        slow_reader = _slow_reader(server, caller, 'e2e-export-as-listed')
        with slow_reader, slow_reader.stream('GET', f'/v1/chats/{chat_id}/export') as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            while len(received) < MIB:
                received += next(chunks)
            caller.stored_file(chat_id, 'small.txt', b'S' * 1000)
            caller.http.put(f'/v1/chats/{chat_id}/history', content=b'later')
            drain(chunks, received)
        assert unzip(bytes(received)) == {
            'history.md': b'',
            'big.bin': BIG,
            'small.txt': b's' * 1000,
        }
        retried = caller.http.get(f'/v1/chats/{chat_id}/export')
        assert unzip(retried.content) == {
            'history.md': b'later',
            'big.bin': BIG,
            'small.txt': b'S' * 1000,
        }
    finally:
        caller.close()
    assert 'Traceback' not in server.stderr()


def test_a_listed_blob_collected_during_the_export_cuts_the_archive_short(
    make_server: MakeServer,
) -> None:
    """With a grace period shorter than the export, the replaced file's blob is collected
    before the archive reaches it: the response is cut short, never sent under the listed
    record with other bytes."""
    server = make_server('sqlite', extra_env={**ROOMY, 'STORAGE_GARBAGE_GRACE_SECONDS': '1'})
    caller = Caller(server)
    try:
        chat_id = caller.workspace_and_chat()['chat_id']
        caller.stored_file(chat_id, 'big.bin', BIG)
        listed = caller.stored_file(chat_id, 'small.txt', b's' * 1000)
        received = bytearray()
        slow_reader = _slow_reader(server, caller, CUT_SHORT_ID)
        with slow_reader, slow_reader.stream('GET', f'/v1/chats/{chat_id}/export') as response:
            assert response.status_code == 200
            chunks = response.iter_raw()
            while len(received) < MIB:
                received += next(chunks)
            # same size, other bytes: only the digest tells the versions apart
            caller.stored_file(chat_id, 'small.txt', b'S' * 1000)
            released = blob_path(server.data_dir, listed['file_id'])
            deadline = time.monotonic() + 10.0
            while released.exists():
                assert time.monotonic() < deadline, 'the released blob was not collected'
                time.sleep(0.1)
            with pytest.raises(httpx.RemoteProtocolError):
                drain(chunks, received)
        with pytest.raises(zipfile.BadZipFile):
            zipfile.ZipFile(io.BytesIO(bytes(received)))

        retried = caller.http.get(f'/v1/chats/{chat_id}/export')
        assert unzip(retried.content) == {
            'history.md': b'',
            'big.bin': BIG,
            'small.txt': b'S' * 1000,
        }
    finally:
        caller.close()

    # a race with a write, not a fault: one warning without a traceback, an access line
    # that says the response was cut short, and a count of its own
    entries = _log_entries(server)
    cut = [entry for entry in entries if entry.get('request_id') == CUT_SHORT_ID]
    assert [(e['level'], e['logger']) for e in cut] == [
        ('WARNING', 'chat_storage.export'),
        ('INFO', 'chat_storage.access'),
    ]
    assert 'exc_info' not in cut[0]
    assert (cut[1]['status'], cut[1]['cut_short']) == (200, 'chat_changed_during_export')
    assert [e for e in entries if e['level'] not in {'INFO', 'WARNING'}] == []
    assert 'Traceback' not in server.stderr()
    export_route = '/v1/chats/{chat_id}/export'
    assert _metric(server, 'chat_storage_http_cut_short_total', route=export_route) == 1
    assert _metric(server, 'chat_storage_problems_total', code='internal_error') == 0


def _generated(size: int, seed: int) -> Iterator[bytes]:
    """`size` seeded random bytes in 1 MiB pieces, each piece led by its own number."""
    base = random.Random(seed).randbytes(MIB)  # noqa: S311 - test data, not a secret
    block = 0
    while size > 0:
        piece = (block.to_bytes(8, 'little') + base[8:])[:size]
        size -= len(piece)
        block += 1
        yield piece


def _digest_of(chunks: Iterator[bytes]) -> str:
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def test_an_export_of_a_gibibyte_of_attachments_is_complete_and_exact(
    make_server: MakeServer, tmp_path: Path
) -> None:
    """1 GiB of attachments, uploaded and exported as streams; every member is checked by
    its sha256 and the archive's own CRC-32s (`testzip`), read from disk, not memory."""
    sizes = {'first half.bin': 512 * MIB, 'second half.bin': 512 * MIB, 'tail.bin': 4096 + 7}
    server = make_server(
        'sqlite',
        extra_env={
            'STORAGE_MAX_FILE_BYTES': str(512 * MIB),
            'STORAGE_DEFAULT_QUOTA_BYTES': str(2 * 1024 * MIB),
        },
    )
    caller = Caller(server)
    try:
        chat_id = caller.workspace_and_chat()['chat_id']
        for seed, (name, size) in enumerate(sizes.items()):
            response = caller.http.put(
                f'/v1/chats/{chat_id}/files/by-name/{quote(name, safe="")}',
                content=_generated(size, seed),
                headers={'Content-Length': str(size)},
            )
            assert response.status_code == 201, response.text
        archive_path = tmp_path / 'export.zip'
        with (
            caller.http.stream('GET', f'/v1/chats/{chat_id}/export') as response,
            archive_path.open('wb') as archive_file,
        ):
            assert response.status_code == 200
            for chunk in response.iter_bytes():
                archive_file.write(chunk)

        with zipfile.ZipFile(archive_path) as archive:
            assert archive.testzip() is None
            members = {info.filename: info for info in archive.infolist()}
            assert list(members) == ['history.md', *sizes]
            for seed, (name, size) in enumerate(sizes.items()):
                assert members[name].file_size == size
                with archive.open(name) as member:
                    read = _digest_of(iter(functools.partial(member.read, MIB), b''))
                assert read == _digest_of(_generated(size, seed)), name
    finally:
        caller.close()


# --- signed links ----------------------------------------------------------------------


def test_a_signed_link_works_without_any_credential(make_server: MakeServer) -> None:
    server = make_server(
        'sqlite',
        extra_env={'STORAGE_LINK_SECRET': LINK_SECRET, 'STORAGE_GATEWAY_TOKEN': GATEWAY_TOKEN},
    )
    caller = Caller(server, extra_headers={'Authorization': f'Bearer {GATEWAY_TOKEN}'})
    browser = httpx.Client(base_url=server.base_url, timeout=HTTP_TIMEOUT)
    try:
        chat_id = caller.workspace_and_chat()['chat_id']
        stored = caller.put_file(chat_id, 'report.txt', b'0123456789', 'text/plain')
        assert stored.status_code == 201, stored.text
        record = stored.json()
        made = caller.http.post(
            f'/v1/chats/{chat_id}/files/{record["file_id"]}/link', json={'expires_in': 300}
        )
        assert made.status_code == 201, made.text
        url = made.json()['url']
        assert url.startswith(f'/links/{record["file_id"]}?')

        whole = browser.get(url)
        part = browser.get(url, headers={'Range': 'bytes=-3'})
        unchanged = browser.get(url, headers={'If-None-Match': whole.headers.get('etag', '')})
        caller.stored_file(chat_id, 'report.txt', b'replaced')
        after_replace = browser.get(url)
        without_credentials = browser.get(f'/v1/chats/{chat_id}/files/{record["file_id"]}')
    finally:
        browser.close()
        caller.close()

    assert whole.status_code == 200
    assert whole.content == b'0123456789'
    assert whole.headers['content-type'] == 'text/plain'
    assert whole.headers['content-disposition'].startswith('attachment;')
    assert whole.headers['x-content-type-options'] == 'nosniff'
    assert part.status_code == 206
    assert part.content == b'789'
    assert unchanged.status_code == 304
    assert_problem(after_replace, 403, 'invalid_link')
    assert_problem(without_credentials, 401, 'unauthenticated')
