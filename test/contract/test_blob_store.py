"""The `BlobStore` and `BlobInventory` ports on a real file system (no metadata store)."""

import hashlib
import os
import stat
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import UUID

import anyio
import pytest

from adapter.blob_store import BlobStore
from domain.content import ByteRange
from domain.error import (
    ContentLimitExceededError,
    InsufficientStorageError,
    StoredContentMissingError,
)

CHUNK_BYTES = 64
LIMIT = 10_000
FIRST_ID = UUID('00000000-0000-4000-8000-000000000001')
SECOND_ID = UUID('00000000-0000-4000-8000-000000000002')
MISSING_ID = UUID('ffffffff-0000-4000-8000-00000000ffff')
# longer than several batches, not a multiple of one
BODY = bytes(range(256)) * 3 + b'tail'


class SequentialIds:
    """Ids 1, 2, 3, ... in the form of version-4 UUIDs."""

    def __init__(self) -> None:
        self.issued = 0

    def new(self) -> UUID:
        self.issued += 1
        return UUID(int=FIRST_ID.int - 1 + self.issued)


class CountingStream:
    """`count` copies of `chunk`; how many were pulled."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk = chunk
        self.count = count
        self.pulled = 0

    def __aiter__(self) -> 'CountingStream':
        return self

    async def __anext__(self) -> bytes:
        if self.pulled >= self.count:
            raise StopAsyncIteration
        self.pulled += 1
        return self.chunk


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def batches(data: bytes, size: int = 50) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def collect(stream: AsyncIterator[bytes]) -> bytes:
    return b''.join([chunk async for chunk in stream])


def files_under(directory: Path) -> list[str]:
    return sorted(
        str(path.relative_to(directory)) for path in directory.rglob('*') if path.is_file()
    )


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / 'data'


@pytest.fixture
def store(data_dir: Path) -> BlobStore:
    return BlobStore(data_dir, chunk_bytes=CHUNK_BYTES, ids=SequentialIds())


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The files and directories fsynced during the test, in order (fsync still runs)."""
    paths: list[Path] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        paths.append(Path(f'/proc/self/fd/{fd}').readlink())
        real_fsync(fd)

    monkeypatch.setattr(os, 'fsync', recording_fsync)
    return paths


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, so that writes hit a real ENOSPC."""
    mount_point = tmp_path / 'small-disk'
    mount_point.mkdir()
    mounted = subprocess.run(
        ['mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        reason = mounted.stderr.decode(errors='replace').strip()
        pytest.skip(f'cannot mount a 1 MiB tmpfs to fill up (needs root): {reason}')
    try:
        yield mount_point
    finally:
        subprocess.run(['umount', '--lazy', str(mount_point)], check=False)


# --- stage ------------------------------------------------------------------------------


async def test_stage_writes_a_blob_with_the_size_and_sha256_of_the_stream(
    store: BlobStore,
) -> None:
    staged = await store.stage(batches(BODY), limit_bytes=LIMIT)

    assert staged.blob_id == FIRST_ID
    assert staged.inline is None
    assert staged.size_bytes == len(BODY)
    assert staged.sha256 == hashlib.sha256(BODY).hexdigest()
    assert store.blob_path(FIRST_ID).read_bytes() == BODY


async def test_a_blob_lives_under_the_first_two_hex_digits_of_its_id(
    store: BlobStore, data_dir: Path
) -> None:
    await store.stage(chunks(b'content'), limit_bytes=LIMIT)

    assert files_under(data_dir) == [f'.blobs/00/{FIRST_ID.hex}']


async def test_a_blob_is_read_only(store: BlobStore) -> None:
    await store.stage(chunks(b'content'), limit_bytes=LIMIT)

    assert stat.S_IMODE(store.blob_path(FIRST_ID).stat().st_mode) == 0o444


async def test_stage_fsyncs_the_blob_then_its_directory(
    store: BlobStore, synced: list[Path]
) -> None:
    await store.stage(batches(BODY), limit_bytes=LIMIT)

    path = store.blob_path(FIRST_ID)
    assert synced[-2:] == [path, path.parent]


async def test_stage_keeps_content_up_to_inline_bytes_in_memory(
    store: BlobStore, data_dir: Path
) -> None:
    staged = await store.stage(chunks(b'sma', b'll'), limit_bytes=LIMIT, inline_bytes=5)

    assert staged.inline == b'small'
    assert staged.blob_id is None
    assert staged.size_bytes == 5
    assert staged.sha256 == hashlib.sha256(b'small').hexdigest()
    assert files_under(data_dir) == []


async def test_stage_writes_a_blob_of_content_one_byte_over_inline_bytes(
    store: BlobStore,
) -> None:
    staged = await store.stage(chunks(b'sma', b'll!'), limit_bytes=LIMIT, inline_bytes=5)

    assert staged.inline is None
    assert staged.blob_id == FIRST_ID
    assert store.blob_path(FIRST_ID).read_bytes() == b'small!'


async def test_stage_of_empty_content_is_inline_when_rows_may_hold_content(
    store: BlobStore, data_dir: Path
) -> None:
    staged = await store.stage(chunks(), limit_bytes=LIMIT, inline_bytes=5)

    assert staged.inline == b''
    assert staged.size_bytes == 0
    assert files_under(data_dir) == []


async def test_stage_of_empty_content_is_an_empty_blob_without_inline_bytes(
    store: BlobStore,
) -> None:
    staged = await store.stage(chunks(), limit_bytes=LIMIT)

    assert staged.inline is None
    assert staged.size_bytes == 0
    assert store.blob_path(FIRST_ID).read_bytes() == b''


async def test_stage_accepts_exactly_limit_bytes(store: BlobStore) -> None:
    staged = await store.stage(batches(BODY), limit_bytes=len(BODY))

    assert staged.size_bytes == len(BODY)


async def test_stage_refuses_the_first_byte_over_the_limit_and_leaves_nothing(
    store: BlobStore, data_dir: Path
) -> None:
    stream = CountingStream(b'x' * 100, count=50)

    with pytest.raises(ContentLimitExceededError) as raised:
        await store.stage(stream, limit_bytes=1_000)

    assert raised.value.limit_bytes == 1_000
    assert stream.pulled == 11  # the rest of the stream is never pulled
    assert files_under(data_dir) == []


async def test_stage_refuses_content_over_the_limit_within_inline_bytes(
    store: BlobStore, data_dir: Path
) -> None:
    with pytest.raises(ContentLimitExceededError):
        await store.stage(chunks(b'12345'), limit_bytes=4, inline_bytes=100)

    assert files_under(data_dir) == []


async def test_an_error_of_the_stream_is_raised_as_it_is_and_leaves_nothing(
    store: BlobStore, data_dir: Path
) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield BODY
        raise ConnectionResetError('client went away')

    with pytest.raises(ConnectionResetError):
        await store.stage(broken(), limit_bytes=LIMIT)

    assert files_under(data_dir) == []


async def test_a_cancelled_stage_leaves_nothing(store: BlobStore, data_dir: Path) -> None:
    async def stalled() -> AsyncIterator[bytes]:
        yield BODY
        await anyio.sleep_forever()
        yield b'never'

    with anyio.move_on_after(0.2):
        await store.stage(stalled(), limit_bytes=LIMIT)

    assert files_under(data_dir) == []


async def test_a_full_disk_is_insufficient_storage_and_leaves_nothing(small_disk: Path) -> None:
    store = BlobStore(small_disk / 'data', chunk_bytes=64 * 1024)

    with pytest.raises(InsufficientStorageError):
        await store.stage(CountingStream(b'x' * 64 * 1024, count=32), limit_bytes=4 * 1024**2)

    assert files_under(small_disk / 'data') == []


# --- read, path, discard ----------------------------------------------------------------


async def test_read_returns_the_blob_in_chunks(store: BlobStore) -> None:
    await store.stage(batches(BODY), limit_bytes=LIMIT)

    read = [chunk async for chunk in store.read(FIRST_ID)]

    assert b''.join(read) == BODY
    assert max(len(chunk) for chunk in read) == CHUNK_BYTES


async def test_read_returns_a_range(store: BlobStore) -> None:
    await store.stage(batches(BODY), limit_bytes=LIMIT)

    assert await collect(store.read(FIRST_ID, ByteRange(10, 200))) == BODY[10:201]
    assert await collect(store.read(FIRST_ID, ByteRange(0, 0))) == BODY[:1]


async def test_read_of_a_range_past_the_end_stops_at_the_end(store: BlobStore) -> None:
    await store.stage(batches(BODY), limit_bytes=LIMIT)

    assert await collect(store.read(FIRST_ID, ByteRange(len(BODY) - 3, 10**6))) == BODY[-3:]


async def test_read_of_a_missing_blob_fails_on_the_first_chunk(store: BlobStore) -> None:
    stream = store.read(MISSING_ID)  # nothing is opened yet

    with pytest.raises(StoredContentMissingError):
        await anext(stream)


async def test_read_of_something_that_is_not_a_regular_file_is_missing(store: BlobStore) -> None:
    path = store.blob_path(FIRST_ID)
    path.parent.mkdir()
    os.mkfifo(path)

    with pytest.raises(StoredContentMissingError):
        await collect(store.read(FIRST_ID))


async def test_path_is_the_absolute_path_of_the_blob(store: BlobStore) -> None:
    await store.stage(chunks(b'content'), limit_bytes=LIMIT)

    path = await store.path(FIRST_ID)

    assert Path(path).is_absolute()
    assert Path(path).read_bytes() == b'content'


async def test_path_of_a_missing_blob_is_stored_content_missing(store: BlobStore) -> None:
    with pytest.raises(StoredContentMissingError):
        await store.path(MISSING_ID)


async def test_discard_removes_the_blob_and_a_missing_one_is_no_error(
    store: BlobStore, data_dir: Path
) -> None:
    staged = await store.stage(chunks(b'content'), limit_bytes=LIMIT)

    await store.discard(staged)
    await store.discard(staged)

    assert files_under(data_dir) == []


# --- release, older_than, remove, inspect ------------------------------------------------


async def test_older_than_lists_blobs_and_leftovers_older_than_the_age(
    store: BlobStore, data_dir: Path
) -> None:
    await store.stage(chunks(b'content'), limit_bytes=LIMIT)
    (data_dir / '.blobs' / 'tmp' / SECOND_ID.hex).write_bytes(b'left over')
    (data_dir / '.blobs' / 'tmp' / 'not-an-id').write_bytes(b'not ours')
    await anyio.sleep(0.1)

    assert sorted(await store.older_than(0.05)) == [FIRST_ID, SECOND_ID]
    assert await store.older_than(60) == []


async def test_a_released_blob_is_young_again(store: BlobStore) -> None:
    await store.stage(chunks(b'content'), limit_bytes=LIMIT)
    await anyio.sleep(0.1)

    await store.release([FIRST_ID, MISSING_ID])

    assert await store.older_than(0.05) == []


async def test_remove_removes_blobs_and_leftovers_and_counts_them(
    store: BlobStore, data_dir: Path
) -> None:
    await store.stage(chunks(b'content'), limit_bytes=LIMIT)
    leftover = data_dir / '.blobs' / 'tmp' / SECOND_ID.hex
    (leftover / 'chat').mkdir(parents=True)  # a chat directory being removed
    (leftover / 'chat' / 'history.md').write_bytes(b'# old')

    removed = await store.remove([FIRST_ID, SECOND_ID, MISSING_ID])

    assert removed == 2
    assert files_under(data_dir) == []
    assert await store.older_than(0) == []


async def test_inspect_reads_size_sha256_and_mode(store: BlobStore) -> None:
    await store.stage(batches(BODY), limit_bytes=LIMIT)

    state = await store.inspect(FIRST_ID)

    assert state is not None
    assert (state.size_bytes, state.sha256, state.writable) == (
        len(BODY),
        hashlib.sha256(BODY).hexdigest(),
        False,
    )


async def test_inspect_sees_a_write_bit(store: BlobStore) -> None:
    await store.stage(chunks(b'content'), limit_bytes=LIMIT)
    store.blob_path(FIRST_ID).chmod(0o644)

    state = await store.inspect(FIRST_ID)

    assert state is not None
    assert state.writable


async def test_inspect_of_a_missing_blob_is_none(store: BlobStore) -> None:
    assert await store.inspect(MISSING_ID) is None


async def test_the_data_directory_is_writable(store: BlobStore, data_dir: Path) -> None:
    assert await store.is_writable()
    assert files_under(data_dir) == []
