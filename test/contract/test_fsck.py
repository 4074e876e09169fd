"""`chat-storage fsck` on a real data directory and a real SQLite or PostgreSQL store.

The store is filled through the use cases, damaged by hand, then checked by the console
command in a process of its own.
"""

import asyncio
import hashlib
import io
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from adapter.clock import SystemClock
from adapter.file_storage import FileSystemChatStorage
from adapter.id_generator import UuidGenerator
from api.fsck_cli import run_fsck
from api.settings import Settings
from domain.chat import ChatAttachmentName, ChatFile
from repository.sql.backend import PostgresMetadataBackend, SqliteMetadataBackend
from usecase.create_chat import CreateChat
from usecase.ensure_workspace import EnsureWorkspace
from usecase.interface import MetadataBackend
from usecase.upload_attachment import UploadAttachment
from usecase.write_history import WriteHistory

ROOT = Path(__file__).resolve().parents[2]
USER_ID = UUID('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa')
QUOTA = 10_000_000
MAX_FILE = 1_000_000
HISTORY = b'# Plans\n\n**user:** hello\n'
FILES = {
    'kept.txt': b'kept as it is',
    'gone.bin': os.urandom(3000),
    'flipped.bin': os.urandom(5000),
}
LINE = re.compile(r'^(DAMAGE|NOTICE) (\w+) (.*?): .*?( \[repaired\])?$')


@dataclass(frozen=True)
class Store:
    backend: MetadataBackend
    env: dict[str, str]
    data_dir: Path
    workspace_id: UUID
    chat_id: UUID

    @property
    def chat_dir(self) -> Path:
        return self.data_dir / 'workspaces' / str(self.workspace_id) / 'chats' / str(self.chat_id)


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture(params=['sqlite', pytest.param('postgres', marks=pytest.mark.postgres)])
def postgres_or_none(request: pytest.FixtureRequest) -> str | None:
    """The DSN of a throwaway PostgreSQL database, or None for the SQLite case."""
    if request.param == 'sqlite':
        return None
    make_database: Callable[[], str] = request.getfixturevalue('make_postgres_database')
    return make_database()


@pytest.fixture
async def store(postgres_or_none: str | None, tmp_path: Path) -> AsyncIterator[Store]:
    """A workspace with one chat: a history and three files, written by the use cases."""
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith('STORAGE_')}
    env['STORAGE_DATA_DIR'] = str(data_dir)
    backend: MetadataBackend
    if postgres_or_none is None:
        env['STORAGE_METADATA_BACKEND'] = 'sqlite'
        backend = SqliteMetadataBackend(data_dir / 'metadata.db', pool_size=2)
    else:
        env['STORAGE_METADATA_BACKEND'] = 'postgres'
        env['STORAGE_POSTGRES_DSN'] = postgres_or_none
        backend = PostgresMetadataBackend(postgres_or_none, pool_size=2)
    await backend.connect()
    await backend.migrate()
    storage = FileSystemChatStorage(data_dir)
    uow, clock, ids = backend.unit_of_work, SystemClock(), UuidGenerator()
    workspace = (await EnsureWorkspace(uow, clock, ids, QUOTA)(USER_ID)).workspace
    chat = await CreateChat(uow, storage, clock, ids)(USER_ID, 'fsck')
    upload = UploadAttachment(uow, storage, clock, ids, MAX_FILE)
    for name, data in FILES.items():
        await upload(USER_ID, chat.chat_id, name, None, chunks(data))
    await WriteHistory(uow, storage, clock, MAX_FILE)(USER_ID, chat.chat_id, chunks(HISTORY))
    await storage.close()
    try:
        yield Store(backend, env, data_dir, workspace.workspace_id, chat.chat_id)
    finally:
        await backend.close()


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


async def fsck(store: Store, *, repair: bool = False) -> Result:
    """`run_fsck` as `chat-storage fsck` calls it, in a thread (it runs its own loop)."""
    settings = Settings(
        data_dir=store.data_dir,
        metadata_backend=store.env['STORAGE_METADATA_BACKEND'],
        postgres_dsn=store.env.get('STORAGE_POSTGRES_DSN'),
    )
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run_fsck, settings, repair=repair, out=out, err=err)
    return Result(code, out.getvalue(), err.getvalue())


def fsck_script(store: Store, *args: str) -> subprocess.CompletedProcess[str]:
    """The console command itself, in a process of its own."""
    return subprocess.run(
        [sys.executable, '-m', 'api.cli', 'fsck', *args],
        cwd=ROOT,
        env=store.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def findings(stdout: str) -> set[tuple[str, str, str | None, bool]]:
    """(level, code, name, repaired) of every finding line."""
    found = set()
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            names = re.findall(r'name=(\S+)', match.group(3))
            name = names[0] if names else None
            found.add((match.group(1), match.group(2), name, match.group(4) is not None))
    return found


def snapshot(directory: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under `directory`, except the SQLite file."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob('*'))
        if path.is_file() and not path.name.startswith('metadata.db')
    }


async def damage(store: Store) -> dict[str, Path]:
    """Every kind of damage fsck knows; the paths it made or changed."""
    (store.chat_dir / 'gone.bin').unlink()
    flipped = store.chat_dir / 'flipped.bin'
    data = bytearray(flipped.read_bytes())
    data[100] ^= 0xFF
    flipped.write_bytes(bytes(data))
    sandbox_file = store.chat_dir / 'sandbox-notes.txt'
    sandbox_file.write_bytes(b'written by the sandbox')
    stray = store.data_dir / '.staging' / uuid4().hex
    stray.write_bytes(b'half an upload')
    empty_orphan = store.chat_dir.parent / str(uuid4())
    empty_orphan.mkdir()
    (empty_orphan / 'history.md').touch()
    full_orphan = store.chat_dir.parent / str(uuid4())
    full_orphan.mkdir()
    (full_orphan / 'notes.txt').write_bytes(b'nobody knows')
    async with store.backend.unit_of_work() as uow:
        await uow.chat_files.save(
            ChatFile(
                file_id=uuid4(),
                chat_id=store.chat_id,
                name=ChatAttachmentName('ghost.txt'),
                content_type=None,
                size_bytes=7,
                created_at=datetime.now(UTC),
                sha256='0' * 64,
            )
        )
        workspace = await uow.workspaces.get(store.workspace_id)
        assert workspace is not None
        await uow.workspaces.save(replace(workspace, used_bytes=workspace.used_bytes + 12345))
        await uow.commit()
    return {
        'flipped': flipped,
        'sandbox_file': sandbox_file,
        'stray': stray,
        'empty_orphan': empty_orphan,
        'full_orphan': full_orphan,
    }


async def rows(store: Store) -> tuple[set[str], int, int]:
    """File names, `file_count` and `used_bytes` as the metadata has them."""
    async with store.backend.unit_of_work(write=False) as uow:
        files = await uow.chat_files.list_by_chat_id(store.chat_id)
        chat = await uow.chats.get(store.chat_id)
        workspace = await uow.workspaces.get(store.workspace_id)
    assert chat is not None
    assert workspace is not None
    return {f.name.value for f in files}, chat.file_count, workspace.used_bytes


async def test_a_clean_store_exits_0(store: Store) -> None:
    result = await fsck(store)

    assert result.returncode == 0, result.stdout + result.stderr
    assert 'result: clean' in result.stdout
    assert f'{store.workspace_id} used_bytes=' in result.stdout
    assert findings(result.stdout) == set()


async def test_fsck_reports_every_damage_and_changes_nothing(store: Store) -> None:
    made = await damage(store)
    before = (snapshot(store.data_dir), await rows(store))

    result = fsck_script(store)

    assert result.returncode == 1, result.stdout + result.stderr
    assert findings(result.stdout) == {
        ('DAMAGE', 'file_missing', 'gone.bin', False),
        ('DAMAGE', 'file_missing', 'ghost.txt', False),
        ('DAMAGE', 'sha256_mismatch', 'flipped.bin', False),
        ('DAMAGE', 'file_count_mismatch', None, False),
        ('DAMAGE', 'usage_mismatch', None, False),
        ('DAMAGE', 'staging_leftover', made['stray'].name, False),
        ('DAMAGE', 'orphan_chat_directory', None, False),
        ('NOTICE', 'unknown_file', 'sandbox-notes.txt', False),
    }
    assert result.stdout.count('orphan_chat_directory') == 2
    assert 'checking [' in result.stderr  # the progress bar
    assert (snapshot(store.data_dir), await rows(store)) == before


async def test_repair_fixes_what_needs_no_guess_and_leaves_the_rest(store: Store) -> None:
    made = await damage(store)
    flipped_bytes = made['flipped'].read_bytes()
    stray_name = made['stray'].name

    result = await fsck(store, repair=True)

    assert result.returncode == 1, result.stdout + result.stderr  # the hash mismatch stays
    assert findings(result.stdout) == {
        ('DAMAGE', 'file_missing', 'gone.bin', True),
        ('DAMAGE', 'file_missing', 'ghost.txt', True),
        ('DAMAGE', 'sha256_mismatch', 'flipped.bin', False),
        ('DAMAGE', 'file_count_mismatch', None, True),
        ('DAMAGE', 'usage_mismatch', None, True),
        ('DAMAGE', 'staging_leftover', stray_name, True),
        ('DAMAGE', 'orphan_chat_directory', None, True),
        ('DAMAGE', 'orphan_chat_directory', None, False),
        ('NOTICE', 'unknown_file', 'sandbox-notes.txt', False),
    }
    names, file_count, used_bytes = await rows(store)
    assert (names, file_count) == ({'kept.txt', 'flipped.bin'}, 2)
    assert used_bytes == len(HISTORY) + len(FILES['kept.txt']) + len(FILES['flipped.bin'])
    assert made['flipped'].read_bytes() == flipped_bytes  # never "repaired"
    assert made['sandbox_file'].read_bytes() == b'written by the sandbox'
    assert not made['stray'].exists()
    assert not made['empty_orphan'].exists()
    assert (made['full_orphan'] / 'notes.txt').read_bytes() == b'nobody knows'

    again = await fsck(store)

    assert again.returncode == 1
    assert findings(again.stdout) == {
        ('DAMAGE', 'sha256_mismatch', 'flipped.bin', False),
        ('DAMAGE', 'orphan_chat_directory', None, False),
        ('NOTICE', 'unknown_file', 'sandbox-notes.txt', False),
    }


async def test_repair_of_a_repairable_store_exits_0(store: Store) -> None:
    (store.chat_dir / 'gone.bin').unlink()

    result = await fsck(store, repair=True)

    assert result.returncode == 0, result.stdout + result.stderr
    assert findings(result.stdout) == {
        ('DAMAGE', 'file_missing', 'gone.bin', True),
    }
    assert (await fsck(store)).returncode == 0


def test_a_missing_data_directory_is_a_usage_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith('STORAGE_')}
    env['STORAGE_DATA_DIR'] = str(tmp_path / 'none')
    store = Store(None, env, tmp_path / 'none', USER_ID, USER_ID)  # type: ignore[arg-type]

    result = fsck_script(store)

    assert result.returncode == 2
    assert 'no data directory' in result.stderr
    assert result.stdout == ''


async def test_fsck_needs_no_http_server_choice(store: Store) -> None:
    # $CHAT_STORAGE_SERVER is a choice of `serve` only: a bad one does not concern fsck
    store = replace(store, env={**store.env, 'CHAT_STORAGE_SERVER': 'bogus'})

    result = await asyncio.to_thread(fsck_script, store)

    assert result.returncode == 0, result.stderr
    assert 'result: clean' in result.stdout


def test_an_unreachable_store_is_a_usage_error_saying_why(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith('STORAGE_')}
    env['STORAGE_DATA_DIR'] = str(tmp_path)
    env['STORAGE_METADATA_BACKEND'] = 'postgres'
    env['STORAGE_POSTGRES_DSN'] = 'postgresql://chat:hunter2@127.0.0.1:1/chat'
    store = Store(None, env, tmp_path, USER_ID, USER_ID)  # type: ignore[arg-type]

    result = fsck_script(store)

    assert result.returncode == 2
    cannot = 'cannot check: ServiceUnavailableError service_unavailable: connection refused'
    assert result.stderr.strip().splitlines() == [f'chat-storage fsck: {cannot}']
    assert 'hunter2' not in result.stderr
