"""No path outside the data directory is read or written, whatever a sandbox plants.

A sandbox works inside a chat directory and may replace any entry with a symlink: to a
file outside the data directory (`/etc/passwd`-like), or to another chat's file. Reads
never look at the chat directory (they send the committed blob, also by path), so they
serve the committed bytes; writes publish over the link and never write through it;
deletes remove the link and leave its target. A chat directory that is itself a symlink
(planted by something outside the sandbox) is replaced by a directory of the service's
own at the next publication, its target left as it was (ADR 027, docs/api-notes.md).
A real server, because large downloads are sent by path by the server itself.
"""

import io
import os
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from e2e_support import LEAK_MARKERS, Caller, Json, ServerProcess, staging_entries

pytestmark = pytest.mark.e2e

SECRET = b'root:x:0:0:TOP SECRET outside the data directory\n'
OTHER = b'bytes of another chat'
SMALL = b'small attachment'
LARGE = os.urandom(150_000)  # above the size read whole: sent by path (Granian) or streamed


@pytest.fixture(scope='module')
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server (SQLite): the file system, not the metadata store, is under test."""
    root = tmp_path_factory.mktemp('path-escape')
    with ServerProcess(root / 'data', root) as process:
        yield process


@dataclass
class Planted:
    caller: Caller
    chat: Json
    small: Json
    large: Json
    outside: Path
    other_file: Path

    @property
    def chat_id(self) -> str:
        return str(self.chat['chat_id'])

    @property
    def chat_dir(self) -> Path:
        return self.caller.chat_dir(self.chat)

    def plant(self, name: str, target: Path) -> None:
        """What a sandbox can do in its chat directory: swap an entry for a symlink."""
        entry = self.chat_dir / name
        entry.unlink()
        entry.symlink_to(target)

    def assert_targets_untouched(self) -> None:
        assert self.outside.read_bytes() == SECRET
        assert self.other_file.read_bytes() == OTHER


@pytest.fixture
def planted(server: ServerProcess, tmp_path: Path) -> Iterator[Planted]:
    outside = tmp_path / 'passwd'
    outside.write_bytes(SECRET)
    alice = Caller(server)
    chat = alice.workspace_and_chat()
    alice.http.put(f'/v1/chats/{chat["chat_id"]}/history', content=b'# history\n')
    small = alice.stored_file(chat['chat_id'], 'small.txt', SMALL)
    large = alice.stored_file(chat['chat_id'], 'large.bin', LARGE)
    bob = Caller(server)
    other_chat = bob.workspace_and_chat()
    bob.stored_file(other_chat['chat_id'], 'other.txt', OTHER)
    yield Planted(alice, chat, small, large, outside, bob.chat_dir(other_chat) / 'other.txt')
    alice.close()
    bob.close()


def _assert_no_leak(response: httpx.Response) -> None:
    assert SECRET not in response.content
    assert OTHER not in response.content
    for marker in LEAK_MARKERS:
        assert marker not in response.text


def _assert_served(response: httpx.Response, content: bytes, etag: str | None = None) -> None:
    """The committed bytes (or their range), under the committed ETag; nothing planted."""
    assert response.status_code in {200, 206}, response.text
    if response.status_code == 206:
        start, end = (
            int(n) for n in response.headers['content-range'][6:].split('/')[0].split('-')
        )
        content = content[start : end + 1]
    assert response.content == content
    if etag is not None:
        assert response.headers['etag'] == etag
    _assert_no_leak(response)


# --- reads ---------------------------------------------------------------------------------------


@pytest.mark.parametrize('file', ['small', 'large'])
@pytest.mark.parametrize('target', ['outside', 'other chat'])
@pytest.mark.parametrize('range_header', [None, 'bytes=0-20'])
def test_a_download_after_a_symlink_is_planted_serves_the_committed_bytes(
    planted: Planted, file: str, target: str, range_header: str | None
) -> None:
    record = planted.small if file == 'small' else planted.large
    url = f'/v1/chats/{planted.chat_id}/files/{record["file_id"]}/content'
    etag = planted.caller.http.get(url).headers['etag']
    planted.plant(record['name'], planted.outside if target == 'outside' else planted.other_file)
    headers = {'Range': range_header} if range_header else {}

    response = planted.caller.http.get(url, headers=headers)

    _assert_served(response, SMALL if file == 'small' else LARGE, etag)
    assert response.status_code == (206 if range_header else 200)
    planted.assert_targets_untouched()


def test_a_signed_link_after_a_symlink_is_planted_serves_the_committed_bytes(
    server: ServerProcess,
) -> None:
    """The same with links on: a server of its own with STORAGE_LINK_SECRET."""
    root = server.log_dir / 'linked'
    root.mkdir(exist_ok=True)
    env = {'STORAGE_LINK_SECRET': 'path-escape-link-secret-0123456789'}
    with ServerProcess(root / 'data', root, extra_env=env) as linked:
        caller = Caller(linked)
        chat = caller.workspace_and_chat()
        record = caller.stored_file(chat['chat_id'], 'large.bin', LARGE)
        link = caller.http.post(
            f'/v1/chats/{chat["chat_id"]}/files/{record["file_id"]}/link',
            json={'expires_in': 600},
        ).json()['url']
        outside = root / 'passwd'
        outside.write_bytes(SECRET)
        entry = caller.chat_dir(chat) / 'large.bin'
        entry.unlink()
        entry.symlink_to(outside)

        response = httpx.get(linked.base_url + link)

        _assert_served(response, LARGE)
        assert outside.read_bytes() == SECRET
        caller.close()


def test_a_planted_history_symlink_is_not_read(planted: Planted) -> None:
    url = f'/v1/chats/{planted.chat_id}/history'
    etag = planted.caller.http.get(url).headers['etag']
    planted.plant('history.md', planted.outside)

    response = planted.caller.http.get(url)

    _assert_served(response, b'# history\n', etag)


def test_an_export_with_a_planted_symlink_never_contains_its_target(planted: Planted) -> None:
    planted.plant('small.txt', planted.outside)

    response = planted.caller.http.get(f'/v1/chats/{planted.chat_id}/export')

    # the committed bytes, never the link's target
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        assert archive.read('small.txt') == SMALL
        assert archive.read('large.bin') == LARGE
    assert SECRET not in response.content
    assert OTHER not in response.content


# --- writes --------------------------------------------------------------------------------------


@pytest.mark.parametrize('route', ['raw', 'multipart'])
def test_an_upload_onto_a_planted_symlink_replaces_the_link(planted: Planted, route: str) -> None:
    planted.plant('small.txt', planted.outside)

    if route == 'raw':
        response = planted.caller.put_file(planted.chat_id, 'small.txt', b'new content')
    else:
        response = planted.caller.http.post(
            f'/v1/chats/{planted.chat_id}/files', files={'file': ('small.txt', b'new content')}
        )

    assert response.status_code == (200 if route == 'raw' else 201), response.text
    entry = planted.chat_dir / 'small.txt'
    assert not entry.is_symlink()
    assert entry.read_bytes() == b'new content'
    planted.assert_targets_untouched()


def test_a_history_put_onto_a_planted_symlink_replaces_the_link(planted: Planted) -> None:
    planted.plant('history.md', planted.outside)

    response = planted.caller.http.put(f'/v1/chats/{planted.chat_id}/history', content=b'# new\n')

    assert response.status_code == 200, response.text
    entry = planted.chat_dir / 'history.md'
    assert not entry.is_symlink()
    assert entry.read_bytes() == b'# new\n'
    assert planted.caller.history(planted.chat_id) == b'# new\n'
    planted.assert_targets_untouched()


def test_an_append_to_a_planted_history_symlink_never_writes_through_it(
    planted: Planted,
) -> None:
    """The append is a row; its publication replaces the link with the committed history."""
    planted.plant('history.md', planted.outside)
    used = planted.caller.used_bytes()

    response = planted.caller.http.post(
        f'/v1/chats/{planted.chat_id}/history', content=b'appended\n'
    )

    assert response.status_code == 200, response.text
    _assert_no_leak(response)
    planted.assert_targets_untouched()
    assert planted.caller.history(planted.chat_id) == b'# history\nappended\n'
    entry = planted.chat_dir / 'history.md'
    assert not entry.is_symlink()
    assert entry.read_bytes() == b'# history\nappended\n'
    assert planted.caller.used_bytes() == used + len(b'appended\n')
    assert staging_entries(planted.caller.server.data_dir) == set()


# --- deletes -------------------------------------------------------------------------------------


def test_deleting_a_planted_symlink_removes_the_link_not_its_target(planted: Planted) -> None:
    planted.plant('small.txt', planted.outside)
    planted.plant('large.bin', planted.other_file)

    one = planted.caller.http.delete(
        f'/v1/chats/{planted.chat_id}/files/{planted.small["file_id"]}'
    )
    rest = planted.caller.http.delete(f'/v1/chats/{planted.chat_id}/files')

    assert (one.status_code, rest.status_code) == (204, 204)
    assert not os.path.lexists(planted.chat_dir / 'small.txt')
    assert not os.path.lexists(planted.chat_dir / 'large.bin')
    planted.assert_targets_untouched()


def test_deleting_a_chat_full_of_symlinks_leaves_their_targets(planted: Planted) -> None:
    planted.plant('small.txt', planted.outside)
    (planted.chat_dir / 'dir-link').symlink_to(planted.outside.parent)
    (planted.chat_dir / 'other-link').symlink_to(planted.other_file)

    response = planted.caller.http.delete(f'/v1/chats/{planted.chat_id}')

    assert response.status_code == 204, response.text
    assert not os.path.lexists(planted.chat_dir)
    planted.assert_targets_untouched()
    assert planted.outside.parent.is_dir()


# --- a chat directory that is itself a symlink ---------------------------------------------------


@pytest.fixture
def symlinked_chat_dir(planted: Planted, tmp_path: Path) -> Path:
    """The chat directory moved outside the data directory, a symlink left in its place."""
    moved = tmp_path / 'moved-chat'
    shutil.move(planted.chat_dir, moved)
    planted.chat_dir.symlink_to(moved)
    return moved


def test_a_symlinked_chat_directory_is_neither_read_nor_written(
    planted: Planted, symlinked_chat_dir: Path
) -> None:
    """Reads serve the rows' blobs; the first write publishes into a directory that
    replaces the link; the link's target is never read or written."""
    before = {p.name: p.read_bytes() for p in symlinked_chat_dir.iterdir()}
    http, chat_id = planted.caller.http, planted.chat_id

    _assert_served(http.get(f'/v1/chats/{chat_id}/files/{planted.small["file_id"]}/content'), SMALL)
    _assert_served(http.get(f'/v1/chats/{chat_id}/files/{planted.large["file_id"]}/content'), LARGE)
    _assert_served(http.get(f'/v1/chats/{chat_id}/history'), b'# history\n')
    writes = [
        planted.caller.put_file(chat_id, 'small.txt', b'written'),
        planted.caller.put_file(chat_id, 'new.txt', b'written'),
        http.put(f'/v1/chats/{chat_id}/history', content=b'written'),
        http.post(f'/v1/chats/{chat_id}/history', content=b' twice'),
    ]
    for response in writes:
        assert response.is_success, response.text
        _assert_no_leak(response)
    replaced = writes[0].json()
    deleted = http.delete(f'/v1/chats/{chat_id}/files/{replaced["file_id"]}')
    assert deleted.status_code == 204, deleted.text

    assert {p.name: p.read_bytes() for p in symlinked_chat_dir.iterdir()} == before
    chat_dir = planted.chat_dir
    assert chat_dir.is_dir()
    assert not chat_dir.is_symlink()
    shown = {p.name: p.read_bytes() for p in chat_dir.iterdir()}
    # the names the writes published; the rest of the view is the sweep's
    assert shown['history.md'] == b'written twice'
    assert shown['new.txt'] == b'written'
    assert 'small.txt' not in shown
    assert shown.get('large.bin', LARGE) == LARGE
    assert planted.caller.history(chat_id) == b'written twice'
    assert staging_entries(planted.caller.server.data_dir) == set()
