"""`GET /v1/chats/{chat_id}/export`: a ZIP of `history.md` and every attachment."""

import io
import logging
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote
from uuid import UUID

import httpx
import pytest
from data_layout import blob_name
from starlette.types import Message

from api.observability import CUT_SHORT_SCOPE_KEY
from api.routers.export import ArchiveResponse
from usecase.export_chat import ChatExport, ExportChat, ExportedContentChangedError

UNICODE_NAME = 'Résumé 東京 🚀 ü.txt'


def unzip(response: httpx.Response) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.testzip() is None
        return {info.filename: archive.read(info) for info in archive.infolist()}


async def test_export_holds_history_and_every_file_by_name(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    await client.put(f'/v1/chats/{chat_id}/history', content='# Plan\n\nhi ✓\n'.encode())
    uploads = {
        'data.csv': b'a,b\n1,2\n',
        UNICODE_NAME: 'ünïcode body'.encode(),
        'empty.bin': b'',
        'binary.dat': bytes(range(256)) * 3,
    }
    for name, content in uploads.items():
        response = await client.put(
            f'/v1/chats/{chat_id}/files/by-name/{quote(name, safe="")}', content=content
        )
        assert response.status_code == 201, response.text

    response = await client.get(f'/v1/chats/{chat_id}/export')

    assert response.status_code == 200
    assert response.headers['content-type'] == 'application/zip'
    assert response.headers['x-content-type-options'] == 'nosniff'
    assert response.headers['content-disposition'].startswith('attachment;')
    assert "filename*=UTF-8''first.zip" in response.headers['content-disposition']
    assert unzip(response) == {'history.md': '# Plan\n\nhi ✓\n'.encode(), **uploads}


async def test_members_keep_the_order_of_the_listing(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    for name in ('b.txt', 'a.txt', 'c.txt'):
        await client.put(f'/v1/chats/{chat_id}/files/by-name/{name}', content=name.encode())

    response = await client.get(f'/v1/chats/{chat_id}/export')

    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.namelist() == ['history.md', 'b.txt', 'a.txt', 'c.txt']


async def test_unicode_names_are_flagged_utf8(client: httpx.AsyncClient, chat_id: str) -> None:
    name = quote(UNICODE_NAME, safe='')
    await client.put(f'/v1/chats/{chat_id}/files/by-name/{name}', content=b'x')

    response = await client.get(f'/v1/chats/{chat_id}/export')

    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        info = archive.getinfo(UNICODE_NAME)
        assert info.flag_bits & 0x800  # the language encoding flag: the name is UTF-8


async def test_new_chat_exports_an_empty_history_only(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    response = await client.get(f'/v1/chats/{chat_id}/export')

    assert response.status_code == 200
    assert unzip(response) == {'history.md': b''}


async def test_export_sees_the_replacement_and_not_the_deleted(
    client: httpx.AsyncClient, chat_id: str
) -> None:
    await client.put(f'/v1/chats/{chat_id}/files/by-name/keep.txt', content=b'old')
    await client.put(f'/v1/chats/{chat_id}/files/by-name/keep.txt', content=b'new!')
    gone = await client.put(f'/v1/chats/{chat_id}/files/by-name/gone.txt', content=b'x')
    await client.delete(f'/v1/chats/{chat_id}/files/{gone.json()["file_id"]}')

    response = await client.get(f'/v1/chats/{chat_id}/export')

    assert unzip(response) == {'history.md': b'', 'keep.txt': b'new!'}


async def test_export_changes_no_usage(client: httpx.AsyncClient, chat_id: str) -> None:
    await client.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'abc')
    before = (await client.get('/v1/workspace/usage')).json()

    await client.get(f'/v1/chats/{chat_id}/export')

    assert (await client.get('/v1/workspace/usage')).json() == before


async def test_archive_is_named_after_a_safe_title(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    chat = await client.post('/v1/chats', json={'title': ' Q3/Q4: "plan"\tü. '})

    response = await client.get(f'/v1/chats/{chat.json()["chat_id"]}/export')

    disposition = response.headers['content-disposition']
    assert f"filename*=UTF-8''{quote('Q3_Q4_ _plan__ü', safe='')}.zip" in disposition


async def test_chat_without_title_is_named_by_its_id(client: httpx.AsyncClient) -> None:
    await client.put('/v1/workspace')
    chat_id = (await client.post('/v1/chats')).json()['chat_id']

    response = await client.get(f'/v1/chats/{chat_id}/export')

    assert f"filename*=UTF-8''{chat_id}.zip" in response.headers['content-disposition']


async def test_another_users_chat_is_not_found(
    client: httpx.AsyncClient, chat_id: str, other_user: dict[str, str]
) -> None:
    await client.put('/v1/workspace', headers=other_user)

    response = await client.get(f'/v1/chats/{chat_id}/export', headers=other_user)

    assert response.status_code == 404
    assert response.headers['content-type'] == 'application/problem+json'
    assert response.json()['code'] == 'chat_not_found'


async def test_unknown_chat_and_bad_id(client: httpx.AsyncClient, chat_id: str) -> None:
    missing = await client.get('/v1/chats/00000000-0000-4000-8000-000000000000/export')
    malformed = await client.get('/v1/chats/not-a-uuid/export')

    assert missing.status_code == 404
    assert missing.json()['code'] == 'chat_not_found'
    assert malformed.status_code == 422
    assert malformed.json()['code'] == 'validation_error'


async def test_export_needs_the_caller(client: httpx.AsyncClient, chat_id: str) -> None:
    response = await client.get(f'/v1/chats/{chat_id}/export', headers={'X-User-Id': 'not-a-uuid'})

    assert response.status_code == 401
    assert response.json()['code'] == 'unauthenticated'


async def test_a_file_replaced_after_the_listing_is_exported_as_listed(
    client: httpx.AsyncClient, chat_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing names immutable blobs: a write between the listing and the first read
    releases the old blob, which stays for the grace period, so the archive is the
    snapshot the export listed."""
    await client.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'aaa')
    await client.post(f'/v1/chats/{chat_id}/history', content=b'h1')
    listing = ExportChat.__call__

    async def listed_then_replaced(self: ExportChat, user_id: UUID, listed: UUID) -> ChatExport:
        export = await listing(self, user_id, listed)
        replaced = await client.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'AAA')
        assert replaced.status_code == 200
        rewritten = await client.put(f'/v1/chats/{chat_id}/history', content=b'h2')
        assert rewritten.status_code == 200
        return export

    monkeypatch.setattr(ExportChat, '__call__', listed_then_replaced)
    assert unzip(await client.get(f'/v1/chats/{chat_id}/export')) == {
        'history.md': b'h1',
        'a.txt': b'aaa',
    }
    monkeypatch.undo()
    assert unzip(await client.get(f'/v1/chats/{chat_id}/export')) == {
        'history.md': b'h2',
        'a.txt': b'AAA',
    }


async def test_a_listed_blob_collected_before_the_first_byte_is_409_and_logs_no_error(
    client: httpx.AsyncClient,
    chat_id: str,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = await client.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'aaa')
    listing = ExportChat.__call__

    async def listed_then_collected(self: ExportChat, user_id: UUID, listed: UUID) -> ChatExport:
        export = await listing(self, user_id, listed)
        # a write replaced the file and its old blob outlived the grace period
        replaced = await client.put(f'/v1/chats/{chat_id}/files/by-name/a.txt', content=b'AAA')
        assert replaced.status_code == 200
        (data_dir / '.blobs' / blob_name(first.json()['file_id'])).unlink()
        return export

    monkeypatch.setattr(ExportChat, '__call__', listed_then_collected)
    caplog.set_level(logging.INFO)

    response = await client.get(f'/v1/chats/{chat_id}/export')

    assert response.status_code == 409
    assert response.headers['content-type'] == 'application/problem+json'
    assert 'retry-after' not in response.headers
    problem = response.json()
    assert problem['code'] == 'chat_changed_during_export'
    assert 'unreachable' not in problem['detail']
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []

    monkeypatch.undo()
    assert unzip(await client.get(f'/v1/chats/{chat_id}/export')) == {
        'history.md': b'',
        'a.txt': b'AAA',
    }


async def _archive_that_changes() -> AsyncIterator[bytes]:
    yield b'PK first bytes'
    raise ExportedContentChangedError(UUID(int=1), 'a.txt')


async def test_an_archive_cut_short_sends_no_last_message_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope: dict[str, object] = {'type': 'http', 'asgi': {'spec_version': '2.4'}}
    sent: list[Message] = []

    async def receive() -> Message:
        return {'type': 'http.disconnect'}

    async def send(message: Message) -> None:
        sent.append(message)

    caplog.set_level(logging.INFO)
    await ArchiveResponse(_archive_that_changes())(scope, receive, send)

    # no message without `more_body`: the server closes before the final chunk
    assert [(m['type'], m.get('more_body')) for m in sent] == [
        ('http.response.start', None),
        ('http.response.body', True),
    ]
    assert [(r.levelname, r.name, r.exc_info) for r in caplog.records] == [
        ('WARNING', 'chat_storage.export', None)
    ]
    assert scope[CUT_SHORT_SCOPE_KEY] == 'chat_changed_during_export'
