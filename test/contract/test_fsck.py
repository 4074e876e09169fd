"""`chat-storage fsck` on a real data directory and a real SQLite or PostgreSQL store.

The store is filled by the use cases over the real blob store and chat views, damaged
by hand as a crash, an operator or a sandbox would, then checked by `CheckStorage` and
by the console command (`run_fsck`, and `python -m api.cli fsck` in a process of its own).
"""

import asyncio
import hashlib
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from adapter.blob_store import BlobStore
from adapter.chat_view import ChatViews
from adapter.clock import SystemClock
from adapter.file_system import blob_relative_path
from adapter.id_generator import UuidGenerator
from adapter.legacy_layout import LegacyLayout
from api.container import Services, build_services
from api.fsck_cli import run_fsck
from api.settings import Settings, metadata_config
from domain.chat import HISTORY_FILE_NAME, ChatFile
from repository.factory import create_metadata_backend
from usecase.collect_garbage import CollectGarbage
from usecase.convert_legacy import ConvertLegacy
from usecase.fsck import CheckStorage, FindingKind, FsckReport
from usecase.interface import MetadataBackend
from usecase.publish import history_chunks

ROOT = Path(__file__).resolve().parents[2]
USER_ID = UUID('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa')
HISTORY = b'# Plans\n\n**user:** hello\n'
SMALL_APPEND = b'**assistant:** hi\n'
# more than a row holds (64 KiB): the segment is a blob of its own
LARGE_APPEND = b'x' * (70 * 1024) + b'\n'
FILES = {'notes.txt': b'kept as it is', 'data.bin': os.urandom(5000)}
TINY_GRACE = 0.05
LINE = re.compile(r'^(DAMAGE|NOTICE) (\w+)((?: \w+=\S+)*): (.*?)( \[repaired\])?$')

Seen = set[tuple[str, str | None, bool]]


@pytest.fixture(params=['sqlite', pytest.param('postgres', marks=pytest.mark.postgres)])
def backend_name(request: pytest.FixtureRequest) -> str:
    """fsck checks a store that outlives the process: SQLite and PostgreSQL, no memory."""
    return str(request.param)


@pytest.fixture
def settings(backend_name: str, store_dsn: str | None, tmp_path: Path) -> Settings:
    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    if backend_name == 'sqlite':
        return Settings(data_dir=data_dir, metadata_backend='sqlite', sqlite_path=None)
    return Settings(data_dir=data_dir, metadata_backend='postgres', postgres_dsn=store_dsn)


@pytest.fixture
def make_backend(settings: Settings) -> Callable[[], MetadataBackend]:
    """The store the settings name, as `chat-storage fsck` opens it."""
    return lambda: create_metadata_backend(metadata_config(settings))


@dataclass(frozen=True)
class Store:
    settings: Settings
    backend: MetadataBackend
    services: Services
    blobs: BlobStore
    views: ChatViews
    workspace_id: UUID
    chat_id: UUID

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def chat_dir(self) -> Path:
        return self.views.chat_dir(self.workspace_id, self.chat_id)

    def blob(self, blob_id: UUID) -> Path:
        return self.data_dir / blob_relative_path(blob_id)

    def check(self, grace_seconds: float | None = None) -> CheckStorage:
        uow = self.backend.unit_of_work
        grace = self.settings.garbage_grace_seconds if grace_seconds is None else grace_seconds
        return CheckStorage(
            uow,
            self.blobs,
            self.blobs,
            self.views,
            self.services.publisher,
            ConvertLegacy(uow, self.blobs, LegacyLayout(self.data_dir)),
            CollectGarbage(uow, self.blobs, grace),
        )

    async def file(self, name: str) -> ChatFile:
        async with self.backend.unit_of_work(write=False) as uow:
            files = await uow.chat_files.list_by_chat_id(self.chat_id)
        return next(f for f in files if f.name.value == name)

    async def history_blob(self) -> UUID:
        async with self.backend.unit_of_work(write=False) as uow:
            chat = await uow.chats.get(self.chat_id)
        assert chat is not None
        assert chat.history_blob_id is not None
        return chat.history_blob_id

    async def history(self) -> bytes:
        """The committed history, read through the rows."""
        async with self.backend.unit_of_work(write=False) as uow:
            chat, segments = await uow.history_segments.history(self.chat_id)
        assert chat is not None
        return b''.join([chunk async for chunk in history_chunks(self.blobs, chat, segments)])

    async def counts(self) -> tuple[int, int]:
        """`file_count` of the chat and `used_bytes` of the workspace."""
        async with self.backend.unit_of_work(write=False) as uow:
            chat = await uow.chats.get(self.chat_id)
            workspace = await uow.workspaces.get(self.workspace_id)
        assert chat is not None
        assert workspace is not None
        return chat.file_count, workspace.used_bytes


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


@pytest.fixture
async def store(settings: Settings, backend: MetadataBackend) -> Store:
    """One workspace, one chat: two files, a history of a base blob, an inline segment and
    a segment blob; every view published."""
    blobs = BlobStore(settings.data_dir)
    views = ChatViews(settings.data_dir)
    services = build_services(settings, backend, blobs, views, SystemClock(), UuidGenerator())
    workspace = (await services.ensure_workspace(USER_ID)).workspace
    chat = await services.create_chat(USER_ID, 'fsck')
    for name, data in FILES.items():
        await services.upload_attachment(USER_ID, chat.chat_id, name, None, chunks(data))
    await services.write_history(USER_ID, chat.chat_id, chunks(HISTORY))
    await services.append_history(USER_ID, chat.chat_id, chunks(SMALL_APPEND))
    await services.append_history(USER_ID, chat.chat_id, chunks(LARGE_APPEND))
    return Store(settings, backend, services, blobs, views, workspace.workspace_id, chat.chat_id)


def seen(report: FsckReport) -> Seen:
    """(code, name, repaired) of every finding."""
    return {(f.kind.code, f.name, f.repaired) for f in report.findings}


def rewrite(path: Path, data: bytes) -> None:
    """Change a blob in place (same inode), as root or an operator could, mode kept."""
    path.chmod(0o644)
    path.write_bytes(data)
    path.chmod(0o444)


async def assert_view_is_the_rows(store: Store) -> None:
    """The chat directory holds the rows' files (links of their blobs) and history only."""
    names = {HISTORY_FILE_NAME, *FILES}
    assert {p.name for p in store.chat_dir.iterdir()} == names
    for name in FILES:
        shown = (store.chat_dir / name).lstat()
        blob = store.blob((await store.file(name)).file_id).stat()
        assert (shown.st_dev, shown.st_ino) == (blob.st_dev, blob.st_ino)
    assert (store.chat_dir / HISTORY_FILE_NAME).read_bytes() == await store.history()
    assert not (await store.check()()).findings


# --- a clean store -----------------------------------------------------------------------


async def test_a_clean_store_reports_nothing_and_repair_changes_nothing(store: Store) -> None:
    report = await store.check()()

    assert report.findings == []
    assert not report.damage_left
    assert (len(report.totals), report.chats, report.files) == (1, 1, 2)
    stored = len(HISTORY) + len(SMALL_APPEND) + len(LARGE_APPEND) + sum(map(len, FILES.values()))
    assert (report.totals[0].used_bytes, report.totals[0].stored_bytes) == (stored, stored)
    # every blob is read: the files, the base and the segment blob (not the inline segment)
    assert report.bytes_hashed == stored - len(SMALL_APPEND)

    repaired = await store.check()(repair=True)

    assert repaired.findings == []
    assert repaired.repaired
    await assert_view_is_the_rows(store)


# --- damage to the blobs: reported, never repaired ---------------------------------------


async def test_a_missing_file_blob_is_reported_and_left(store: Store) -> None:
    data = await store.file('data.bin')
    store.blob(data.file_id).unlink()
    # the same chat's view is out of step at another name as well
    (store.chat_dir / 'notes.txt').unlink()

    report = await store.check()()

    assert seen(report) == {
        ('blob_missing', 'data.bin', False),
        ('view_out_of_step', None, False),
    }
    out_of_step = next(f for f in report.findings if f.kind is FindingKind.VIEW_OUT_OF_STEP)
    assert out_of_step.detail == 'not the rows at: data.bin, notes.txt'
    assert report.damage_left

    repaired = await store.check()(repair=True)

    # every other name is published; the view's link of the lost blob, perhaps its only
    # copy, stays as it is
    assert seen(repaired) == seen(report)
    assert repaired.damage_left
    assert await store.file('data.bin') == data  # the row stays: it is the truth
    assert (store.chat_dir / 'data.bin').read_bytes() == FILES['data.bin']
    assert (store.chat_dir / 'notes.txt').read_bytes() == FILES['notes.txt']
    after = await store.check()()
    out_of_step = next(f for f in after.findings if f.kind is FindingKind.VIEW_OUT_OF_STEP)
    assert out_of_step.detail == 'not the rows at: data.bin'


async def test_a_missing_history_blob_is_reported_and_left(store: Store) -> None:
    store.blob(await store.history_blob()).unlink()

    report = await store.check()()

    assert seen(report) == {('blob_missing', HISTORY_FILE_NAME, False)}

    repaired = await store.check()(repair=True)

    assert seen(repaired) == {('blob_missing', HISTORY_FILE_NAME, False)}
    assert repaired.damage_left


async def test_a_blob_of_another_size_is_reported_and_left(store: Store) -> None:
    blob = store.blob((await store.file('data.bin')).file_id)
    rewrite(blob, FILES['data.bin'] + b'more')

    report = await store.check()()

    assert seen(report) == {
        ('blob_size_mismatch', 'data.bin', False),
        ('blob_sha256_mismatch', 'data.bin', False),
    }
    size = next(f for f in report.findings if f.kind is FindingKind.BLOB_SIZE_MISMATCH)
    assert size.detail == f'{len(FILES["data.bin"]) + 4} bytes, recorded {len(FILES["data.bin"])}'

    repaired = await store.check()(repair=True)

    assert seen(repaired) == seen(report)
    assert repaired.damage_left
    assert blob.read_bytes() == FILES['data.bin'] + b'more'


async def test_a_blob_changed_in_place_is_reported_and_never_repaired(store: Store) -> None:
    blob = store.blob((await store.file('data.bin')).file_id)
    flipped = bytearray(FILES['data.bin'])
    flipped[100] ^= 0xFF
    rewrite(blob, bytes(flipped))

    report = await store.check()()

    assert seen(report) == {('blob_sha256_mismatch', 'data.bin', False)}
    finding = report.findings[0]
    assert (finding.workspace_id, finding.chat_id) == (store.workspace_id, store.chat_id)
    assert finding.detail.endswith(f'recorded {hashlib.sha256(FILES["data.bin"]).hexdigest()}')

    repaired = await store.check()(repair=True)

    assert seen(repaired) == {('blob_sha256_mismatch', 'data.bin', False)}
    assert repaired.damage_left
    assert blob.read_bytes() == bytes(flipped)


async def test_a_writable_blob_is_reported_and_left(store: Store) -> None:
    store.blob((await store.file('notes.txt')).file_id).chmod(0o644)
    store.blob(await store.history_blob()).chmod(0o600)

    report = await store.check()()

    assert seen(report) == {
        ('blob_writable', 'notes.txt', False),
        ('blob_writable', HISTORY_FILE_NAME, False),
    }

    repaired = await store.check()(repair=True)

    assert seen(repaired) == seen(report)
    assert repaired.damage_left


async def test_a_history_of_another_size_than_its_row_is_reported_and_left(
    store: Store,
) -> None:
    base = store.blob(await store.history_blob())
    rewrite(base, HISTORY[:-3])

    report = await store.check()()

    assert seen(report) == {('history_size_mismatch', HISTORY_FILE_NAME, False)}
    history_bytes = len(HISTORY) + len(SMALL_APPEND) + len(LARGE_APPEND)
    assert report.findings[0].detail == (
        f'{history_bytes - 3} bytes stored, history_bytes {history_bytes}'
    )

    repaired = await store.check()(repair=True)

    assert seen(repaired) == seen(report)
    assert repaired.damage_left


# --- counts: repaired from the rows ------------------------------------------------------


async def test_a_wrong_file_count_is_recounted(store: Store) -> None:
    async with store.backend.unit_of_work() as uow:
        chat = await uow.chats.get(store.chat_id)
        assert chat is not None
        await uow.chats.save(replace(chat, file_count=7))
        await uow.commit()

    report = await store.check()()

    assert seen(report) == {('file_count_mismatch', None, False)}
    assert report.findings[0].detail == 'file_count 7, rows 2'

    repaired = await store.check()(repair=True)

    assert seen(repaired) == {('file_count_mismatch', None, True)}
    assert not repaired.damage_left
    assert (await store.counts())[0] == len(FILES)
    await assert_view_is_the_rows(store)


async def test_a_wrong_usage_is_set_to_what_the_rows_store(store: Store) -> None:
    _, used = await store.counts()
    async with store.backend.unit_of_work() as uow:
        workspace = await uow.workspaces.get(store.workspace_id)
        assert workspace is not None
        await uow.workspaces.save(replace(workspace, used_bytes=used + 12345))
        await uow.commit()

    report = await store.check()()

    assert seen(report) == {('usage_mismatch', None, False)}
    assert report.findings[0].workspace_id == store.workspace_id
    assert report.findings[0].detail == f'used_bytes {used + 12345}, stored {used}'

    repaired = await store.check()(repair=True)

    assert seen(repaired) == {('usage_mismatch', None, True)}
    assert not repaired.damage_left
    assert (await store.counts())[1] == used
    assert repaired.totals[0].used_bytes == repaired.totals[0].stored_bytes == used


# --- the views: what a sandbox does in its directory -------------------------------------


def delete_a_file(chat_dir: Path, outside: Path) -> None:
    (chat_dir / 'notes.txt').unlink()


def replace_a_file(chat_dir: Path, outside: Path) -> None:
    (chat_dir / 'new').write_bytes(b'the sandbox wrote this')
    (chat_dir / 'new').rename(chat_dir / 'data.bin')


def plant_a_directory_at_a_name(chat_dir: Path, outside: Path) -> None:
    (chat_dir / 'notes.txt').unlink()
    (chat_dir / 'notes.txt').mkdir()
    (chat_dir / 'notes.txt' / 'inner.txt').write_bytes(b'inside')
    (chat_dir / 'notes.txt' / 'link').symlink_to(outside)


def plant_a_symlink_at_a_name(chat_dir: Path, outside: Path) -> None:
    (chat_dir / 'data.bin').unlink()
    (chat_dir / 'data.bin').symlink_to(outside)


def write_new_names(chat_dir: Path, outside: Path) -> None:
    (chat_dir / 'sandbox.txt').write_bytes(b'the sandbox wrote this')
    (chat_dir / 'build').mkdir()
    (chat_dir / 'build' / 'out.o').write_bytes(b'\x7fELF')
    (chat_dir / 'escape').symlink_to(outside)


def append_to_the_history(chat_dir: Path, outside: Path) -> None:
    history = chat_dir / HISTORY_FILE_NAME
    history.chmod(0o644)
    with history.open('ab') as file:
        file.write(b'**sandbox:** not through the API\n')


def replace_the_history_by_a_directory(chat_dir: Path, outside: Path) -> None:
    (chat_dir / HISTORY_FILE_NAME).unlink()
    (chat_dir / HISTORY_FILE_NAME).mkdir()


def remove_the_chat_directory(chat_dir: Path, outside: Path) -> None:
    for path in chat_dir.iterdir():
        path.unlink()
    chat_dir.rmdir()


def replace_the_chat_directory_by_a_symlink(chat_dir: Path, outside: Path) -> None:
    remove_the_chat_directory(chat_dir, outside)
    chat_dir.symlink_to(outside.parent)


@pytest.mark.parametrize(
    'sandbox',
    [
        delete_a_file,
        replace_a_file,
        plant_a_directory_at_a_name,
        plant_a_symlink_at_a_name,
        write_new_names,
        append_to_the_history,
        replace_the_history_by_a_directory,
        remove_the_chat_directory,
        replace_the_chat_directory_by_a_symlink,
    ],
)
async def test_a_view_a_sandbox_changed_is_published_again(
    store: Store, tmp_path: Path, sandbox: Callable[[Path, Path], None]
) -> None:
    outside = tmp_path / 'outside.txt'
    outside.write_bytes(b"not the service's")
    sandbox(store.chat_dir, outside)

    report = await store.check()()

    assert seen(report) == {('view_out_of_step', None, False)}
    assert report.findings[0].chat_id == store.chat_id
    assert report.damage_left

    repaired = await store.check()(repair=True)

    assert seen(repaired) == {('view_out_of_step', None, True)}
    assert not repaired.damage_left
    await assert_view_is_the_rows(store)
    assert outside.read_bytes() == b"not the service's"  # a symlink's target is never touched


async def test_a_history_edited_to_the_same_size_is_out_of_step(store: Store) -> None:
    history = store.chat_dir / HISTORY_FILE_NAME
    edited = (await store.history()).replace(b'hello', b'HELLO')
    history.chmod(0o644)
    history.write_bytes(edited)

    report = await store.check()()

    assert seen(report) == {('view_out_of_step', None, False)}

    await store.check()(repair=True)

    await assert_view_is_the_rows(store)


async def test_a_chat_directory_without_its_chat_is_removed(store: Store) -> None:
    chats = store.chat_dir.parent
    orphan = chats / str(uuid4())
    orphan.mkdir()
    (orphan / HISTORY_FILE_NAME).write_bytes(b'# nobody')
    (orphan / 'notes.txt').write_bytes(b'nobody knows')
    # this chat's directory in another workspace's place
    elsewhere = store.data_dir / 'workspaces' / str(uuid4()) / 'chats' / str(store.chat_id)
    elsewhere.mkdir(parents=True)
    (elsewhere / 'copy.txt').write_bytes(b'a copy')

    report = await store.check()()

    orphans = {(f.workspace_id, f.chat_id) for f in report.findings}
    assert seen(report) == {('orphan_directory', None, False)}
    assert orphans == {
        (store.workspace_id, UUID(orphan.name)),
        (UUID(elsewhere.parents[1].name), store.chat_id),
    }

    repaired = await store.check()(repair=True)

    assert seen(repaired) == {('orphan_directory', None, True)}
    assert len(repaired.findings) == 2
    assert not orphan.exists()
    assert not elsewhere.exists()
    await assert_view_is_the_rows(store)


# --- garbage -----------------------------------------------------------------------------


async def test_garbage_older_than_the_grace_is_a_notice_that_repair_removes(
    store: Store,
) -> None:
    notes = await store.file('notes.txt')
    await store.services.delete_attachment(USER_ID, store.chat_id, notes.file_id)
    released = store.blob(notes.file_id)
    never_committed = await store.blobs.stage(chunks(b'half an upload'), limit_bytes=100)
    assert never_committed.blob_id is not None
    staged = store.blob(never_committed.blob_id)
    named = [
        store.blob((await store.file('data.bin')).file_id),
        store.blob(await store.history_blob()),
    ]

    # younger than the configured grace: not garbage yet
    assert (await store.check()()).findings == []
    assert store.settings.garbage_grace_seconds >= 60
    time.sleep(TINY_GRACE * 2)

    report = await store.check(TINY_GRACE)()

    assert seen(report) == {('garbage', None, False)}
    assert report.findings[0].detail.startswith('2 blobs')
    assert not report.damage_left
    assert released.exists()
    assert staged.exists()

    repaired = await store.check(TINY_GRACE)(repair=True)

    assert seen(repaired) == {('garbage', None, True)}
    assert not released.exists()
    assert not staged.exists()
    assert all(path.exists() for path in named)
    assert (await store.check(TINY_GRACE)()).findings == []


# --- a previous release's data directory -------------------------------------------------


async def test_a_legacy_layout_is_reported_alone_and_converted_by_repair(store: Store) -> None:
    (store.data_dir / '.trash').mkdir()
    (store.data_dir / '.staging').mkdir()
    (store.data_dir / '.staging' / uuid4().hex).write_bytes(b'an upload in flight')

    report = await store.check()()

    assert seen(report) == {('legacy_layout', None, False)}
    assert report.damage_left
    assert report.chats == 0  # nothing else is checked until it is converted
    assert (store.data_dir / '.trash').is_dir()

    repaired = await store.check()(repair=True)

    assert seen(repaired) == {('legacy_layout', None, True)}
    assert not repaired.damage_left
    assert not (store.data_dir / '.trash').exists()
    assert not (store.data_dir / '.staging').exists()
    await assert_view_is_the_rows(store)


# --- the console command -----------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


async def fsck(settings: Settings, *, repair: bool = False) -> Result:
    """`run_fsck` as `chat-storage fsck` calls it, in a thread (it runs its own loop)."""
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(run_fsck, settings, repair=repair, out=out, err=err)
    return Result(code, out.getvalue(), err.getvalue())


def environment(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith('STORAGE_')}
    env['STORAGE_DATA_DIR'] = str(settings.data_dir)
    env['STORAGE_METADATA_BACKEND'] = settings.metadata_backend
    if settings.postgres_dsn is not None:
        env['STORAGE_POSTGRES_DSN'] = settings.postgres_dsn.get_secret_value()
    return env | extra


def fsck_script(env: dict[str, str], *args: str) -> Result:
    """The console command itself, in a process of its own."""
    done = subprocess.run(
        [sys.executable, '-m', 'api.cli', 'fsck', *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def printed(stdout: str) -> set[tuple[str, str, str | None, bool]]:
    """(level, code, name, repaired) of every finding line."""
    found = set()
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            names = re.findall(r'name=(\S+)', match.group(3))
            found.add((match[1], match[2], names[0] if names else None, match[5] is not None))
    return found


async def test_the_command_on_a_clean_store_exits_0(store: Store) -> None:
    result = await fsck(store.settings)

    assert result.returncode == 0, result.stdout + result.stderr
    _, used = await store.counts()
    assert result.stdout.splitlines() == [
        f'checked 1 workspaces, 1 chats, 2 files, {used - len(SMALL_APPEND)} bytes hashed',
        'usage per workspace:',
        f'  {store.workspace_id} used_bytes={used} stored={used} ok',
        'result: clean',
    ]


async def test_the_command_prints_damage_and_exits_1_and_changes_nothing(
    store: Store,
) -> None:
    data = await store.file('data.bin')
    rewrite(store.blob(data.file_id), b'y' * len(FILES['data.bin']))
    (store.chat_dir / 'notes.txt').unlink()
    _, used = await store.counts()
    async with store.backend.unit_of_work() as uow:
        workspace = await uow.workspaces.get(store.workspace_id)
        assert workspace is not None
        await uow.workspaces.save(replace(workspace, used_bytes=used + 1))
        await uow.commit()

    result = await asyncio.to_thread(fsck_script, environment(store.settings))

    assert result.returncode == 1, result.stdout + result.stderr
    assert printed(result.stdout) == {
        ('DAMAGE', 'blob_sha256_mismatch', 'data.bin', False),
        ('DAMAGE', 'usage_mismatch', None, False),
        ('DAMAGE', 'view_out_of_step', None, False),
    }
    where = f'workspace={store.workspace_id} chat={store.chat_id}'
    assert f'DAMAGE view_out_of_step {where}: not the rows at: notes.txt' in result.stdout
    assert f'DAMAGE blob_sha256_mismatch {where} name=data.bin: sha256 ' in result.stdout
    assert f'  {store.workspace_id} used_bytes={used + 1} stored={used} MISMATCH' in result.stdout
    assert result.stdout.endswith('result: 3 damage finding(s), 0 repaired, 3 left\n')
    assert 'checking [' in result.stderr  # the progress bar
    assert not (store.chat_dir / 'notes.txt').exists()
    assert (await store.counts())[1] == used + 1

    repaired = await fsck(store.settings, repair=True)

    assert repaired.returncode == 1  # the changed blob stays
    assert printed(repaired.stdout) == {
        ('DAMAGE', 'blob_sha256_mismatch', 'data.bin', False),
        ('DAMAGE', 'usage_mismatch', None, True),
        ('DAMAGE', 'view_out_of_step', None, True),
    }
    assert repaired.stdout.endswith('result: 3 damage finding(s), 2 repaired, 1 left\n')


async def test_repair_of_a_repairable_store_exits_0(store: Store) -> None:
    (store.chat_dir / 'notes.txt').unlink()

    result = await fsck(store.settings, repair=True)

    assert result.returncode == 0, result.stdout + result.stderr
    assert printed(result.stdout) == {('DAMAGE', 'view_out_of_step', None, True)}
    assert result.stdout.endswith('result: 1 damage finding(s), 1 repaired, 0 left\n')
    assert (await fsck(store.settings)).returncode == 0


async def test_the_command_takes_the_grace_period_from_the_settings(store: Store) -> None:
    await store.blobs.stage(chunks(b'half an upload'), limit_bytes=100)
    time.sleep(TINY_GRACE * 2)

    assert 'garbage' not in (await fsck(store.settings)).stdout

    env = environment(store.settings, STORAGE_GARBAGE_GRACE_SECONDS=str(TINY_GRACE))
    result = await asyncio.to_thread(fsck_script, env)

    assert result.returncode == 0, result.stdout + result.stderr  # garbage is no damage
    assert printed(result.stdout) == {('NOTICE', 'garbage', None, False)}
    assert 'NOTICE garbage: 1 blobs no row names, older than the grace period' in result.stdout

    repaired = await asyncio.to_thread(fsck_script, env, '--repair')

    assert repaired.returncode == 0
    assert printed(repaired.stdout) == {('NOTICE', 'garbage', None, True)}
    assert (await store.check(TINY_GRACE)()).findings == []


async def test_the_command_ignores_the_http_server_choice(store: Store) -> None:
    # $CHAT_STORAGE_SERVER is a choice of `serve` only: a bad one does not concern fsck
    env = environment(store.settings, CHAT_STORAGE_SERVER='bogus')

    result = await asyncio.to_thread(fsck_script, env)

    assert result.returncode == 0, result.stderr
    assert 'result: clean' in result.stdout


def test_a_missing_data_directory_is_a_usage_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / 'none', metadata_backend='sqlite')

    result = fsck_script(environment(settings))

    assert result.returncode == 2
    assert result.stderr == f'chat-storage fsck: no data directory at {tmp_path / "none"}\n'
    assert result.stdout == ''


def test_a_missing_sqlite_file_is_a_usage_error(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(data_dir=tmp_path, metadata_backend='sqlite')

    assert run_fsck(settings, repair=True, out=out, err=err) == 2
    assert err.getvalue() == f'chat-storage fsck: no SQLite file at {tmp_path / "metadata.db"}\n'
    assert not (tmp_path / 'metadata.db').exists()  # none is made
    assert out.getvalue() == ''


def test_the_memory_backend_is_a_usage_error(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    settings = Settings(data_dir=tmp_path, metadata_backend='memory')

    assert run_fsck(settings, repair=False, out=out, err=err) == 2
    assert 'the memory metadata backend keeps nothing to check' in err.getvalue()


def test_an_unreachable_store_is_a_usage_error_saying_why(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        metadata_backend='postgres',
        postgres_dsn='postgresql://chat:hunter2@127.0.0.1:1/chat',
    )

    result = fsck_script(environment(settings))

    assert result.returncode == 2
    cannot = 'cannot check: ServiceUnavailableError service_unavailable: connection refused'
    assert result.stderr.strip().splitlines() == [f'chat-storage fsck: {cannot}']
    assert 'hunter2' not in result.stderr
    assert result.stdout == ''
