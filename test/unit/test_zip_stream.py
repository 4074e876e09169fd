"""The streaming ZIP writer, unzipped again by Python's `zipfile` (and `unzip -t` when present)."""

import io
import shutil
import struct
import subprocess
import zipfile
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapter.zip_stream import FLUSH_BYTES, zip_stream
from usecase.export_chat import ExportEntry

WHEN = datetime(2026, 11, 23, 12, 30, 45, tzinfo=UTC)
ZIP64_EXTRA_ID = 0x0001
LOCAL_HEADER = struct.Struct('<4sHHHHHLLLHH')
DATA_DESCRIPTOR_64 = struct.Struct('<4sLQQ')


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def entry(name: str, *parts: bytes) -> ExportEntry:
    return ExportEntry(
        name=name,
        size_bytes=sum(map(len, parts)),
        modified_at=WHEN,
        chunks=chunks_of(*parts),
    )


async def entries(*items: ExportEntry) -> AsyncIterator[ExportEntry]:
    for item in items:
        yield item


async def archive_of(*items: ExportEntry, force_zip64: bool = False) -> bytes:
    return b''.join([c async for c in zip_stream(entries(*items), force_zip64=force_zip64)])


def members(archive: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        assert opened.testzip() is None  # every CRC-32 checks out
        return {info.filename: opened.read(info) for info in opened.infolist()}


def local_headers(archive: bytes) -> list[tuple[str, bytes]]:
    """(name, extra field) of each local file header, walked from the start."""
    found: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        for info in opened.infolist():
            fields = LOCAL_HEADER.unpack_from(archive, info.header_offset)
            name_length, extra_length = fields[9], fields[10]
            start = info.header_offset + LOCAL_HEADER.size
            name = archive[start : start + name_length].decode()
            extra = archive[start + name_length : start + name_length + extra_length]
            found.append((name, extra))
    return found


def extra_ids(extra: bytes) -> list[int]:
    ids: list[int] = []
    while extra:
        header_id, size = struct.unpack_from('<HH', extra)
        ids.append(header_id)
        extra = extra[4 + size :]
    return ids


CONTENT = {
    'history.md': b'# notes\n',
    'empty.bin': b'',
    'Résumé 東京 🚀.txt': 'unicode ✓'.encode(),
    'big.bin': bytes(range(256)) * 1000,
}


@pytest.mark.parametrize('force_zip64', [False, True])
async def test_members_round_trip(force_zip64: bool) -> None:
    items = [entry(name, data[:100], data[100:]) for name, data in CONTENT.items()]

    archive = await archive_of(*items, force_zip64=force_zip64)

    assert members(archive) == CONTENT


async def test_forced_zip64_writes_zip64_headers_and_descriptors() -> None:
    archive = await archive_of(entry('a.txt', b'abc'), entry('empty', b''), force_zip64=True)

    headers = local_headers(archive)
    assert [name for name, _ in headers] == ['a.txt', 'empty']
    assert all(ZIP64_EXTRA_ID in extra_ids(extra) for _, extra in headers)
    # the data descriptor after a.txt's bytes carries 8-byte sizes
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        info = opened.getinfo('a.txt')
    data_end = info.header_offset + LOCAL_HEADER.size + len('a.txt') + len(headers[0][1]) + 3
    signature, crc, compressed, size = DATA_DESCRIPTOR_64.unpack_from(archive, data_end)
    assert (signature, crc, compressed, size) == (b'PK\x07\x08', info.CRC, 3, 3)


async def test_small_members_need_no_zip64() -> None:
    archive = await archive_of(entry('a.txt', b'abc'))

    assert all(ZIP64_EXTRA_ID not in extra_ids(extra) for _, extra in local_headers(archive))


async def test_members_are_stored_with_utf8_names_times_and_modes() -> None:
    archive = await archive_of(entry('ü.txt', b'x'))

    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        info = opened.getinfo('ü.txt')
    assert info.compress_type == zipfile.ZIP_STORED
    assert info.flag_bits & 0x800  # UTF-8 name
    assert info.flag_bits & 0x08  # sizes in a data descriptor: written as a stream
    assert info.date_time == (2026, 11, 23, 12, 30, 44)  # DOS time has 2-second steps
    assert info.external_attr >> 16 == 0o100644


async def test_big_members_pass_through_in_their_own_chunks() -> None:
    chunk = b'x' * (4 * FLUSH_BYTES)

    pieces = [c async for c in zip_stream(entries(entry('big', chunk, chunk, chunk)))]

    assert all(len(piece) <= len(chunk) + FLUSH_BYTES for piece in pieces)
    assert members(b''.join(pieces)) == {'big': chunk * 3}


async def test_an_entry_that_fails_ends_the_stream_before_the_central_directory() -> None:
    async def failing() -> AsyncIterator[bytes]:
        yield b'partial'
        raise OSError('disk gone')

    sent: list[bytes] = []
    broken = ExportEntry('b.txt', 100, WHEN, failing())
    stream = zip_stream(entries(entry('a.txt', b'a' * FLUSH_BYTES), broken))
    sent.append(await anext(stream))  # a.txt went out before b.txt failed
    with pytest.raises(OSError, match='disk gone'):
        await anext(stream)

    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(io.BytesIO(b''.join(sent)))


@pytest.mark.skipif(shutil.which('unzip') is None, reason='no unzip binary')
async def test_unzip_accepts_the_forced_zip64_archive(tmp_path: Path) -> None:
    path = tmp_path / 'export.zip'
    items = [entry(name, data) for name, data in CONTENT.items()]
    path.write_bytes(await archive_of(*items, force_zip64=True))

    result = subprocess.run(['unzip', '-t', str(path)], capture_output=True, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    assert b'No errors detected' in result.stdout
