"""`make bench` in its tiny configuration, so that the harness cannot rot.

Not a timed test: it asserts that every measurement ran on both backends against its
reference, was written as JSON, and that the bench left nothing behind.
"""

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[2]
BOUND_SECONDS = 600
TRANSFERS = (
    'download 1 MiB',
    'download, cold (evicted from page cache)',
    'upload PUT by-name 1 MiB',
    'upload PUT by-name, cold (files kept)',
    'upload multipart 1 MiB',
    'upload multipart, cold (files kept)',
)
SMALL_REQUESTS = (
    'GET /v1/chats/{id}',
    'GET history of 4 KiB',
    'GET /v1/chats?limit=50',
    'POST history append of 200 B',
    'POST /v1/chats',
)
GROWTH = (
    'growth GET /v1/chats?limit=50',
    'growth GET /v1/chats?limit=50, last page',
    'growth GET …/files?limit=50',
    'growth GET …/files?limit=2',  # a page the small workspace (2 files) fills too
    'growth PUT …/files/by-name of 4 KiB',
)
MEMORY = 'peak RSS, 4 MiB up + down at once'
START_UP = 'growth start-up until ready'  # seconds, large/small

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]


@pytest.fixture(scope='module')
def load_tools() -> None:
    """nginx, wrk and curl; missing ones skip the test locally and fail it under CI."""
    missing = [tool for tool in ('nginx', 'wrk', 'curl') if not _which(tool)]
    if missing:
        reason = f'{", ".join(missing)} not installed (apt-get install -y nginx-light wrk curl)'
        if os.environ.get('CI'):
            pytest.fail(reason)
        pytest.skip(reason)


def _which(tool: str) -> str | None:
    return shutil.which(tool) or shutil.which(tool, path='/usr/sbin:/sbin')


async def _bench_databases(server_dsn: str) -> set[str]:
    connection = await asyncpg.connect(server_dsn, timeout=5)
    try:
        rows = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE 'chat_storage_bench_%'"
        )
    finally:
        await connection.close()
    return {str(row['datname']) for row in rows}


def _processes_mentioning(marker: str) -> list[int]:
    found = []
    for entry in Path('/proc').iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            seen = (entry / 'cmdline').read_bytes() + (entry / 'environ').read_bytes()
        except OSError:
            continue
        if marker.encode() in seen:
            found.append(int(entry.name))
    return found


def test_tiny_bench_measures_everything_and_leaves_nothing_behind(
    load_tools: None, postgres_server_dsn: str, tmp_path: Path
) -> None:
    work_dir, results_dir = tmp_path / 'work', tmp_path / 'results'
    work_dir.mkdir()
    databases_before = asyncio.run(_bench_databases(postgres_server_dsn))
    env = {k: v for k, v in os.environ.items() if not k.startswith('STORAGE_')}

    done = subprocess.run(
        [
            sys.executable,
            '-m',
            'bench',
            '--tiny',
            f'--postgres-dsn={postgres_server_dsn}',
            f'--results-dir={results_dir}',
            f'--work-dir={work_dir}',
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND_SECONDS,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    [written] = results_dir.glob('tiny-2*.json')
    latest = results_dir / 'tiny-latest.json'
    assert latest.read_text() == written.read_text()
    document = json.loads(latest.read_text())
    assert document['mode'] == 'tiny'
    rows = {(row['backend'], row['measurement']): row for row in document['rows']}
    expected = {
        (backend, name)
        for backend in ('sqlite', 'postgres')
        for name in (*TRANSFERS, MEMORY, *SMALL_REQUESTS, *GROWTH, START_UP)
    }
    assert set(rows) == expected
    for (_, name), row in rows.items():
        assert row['figure'] > 0, row
        assert row['ok'] in {True, False, None}
        if name == MEMORY:
            assert row['details']['baseline_mb'] > 0
            assert row['details']['process_count'] >= 1
            assert 0 < row['details']['largest_process_mb'] <= row['figure']
            continue
        assert row['reference'] > 0, row
        if name in GROWTH:  # large/small of the time a request takes
            assert row['ratio'] == pytest.approx(
                row['reference'] / row['figure'], rel=0.01, abs=1e-3
            )
            assert row['details']['large_workspace']['errors'] == 0
            assert row['details']['small_workspace']['errors'] == 0
        else:
            assert row['ratio'] == pytest.approx(
                row['figure'] / row['reference'], rel=0.01, abs=1e-3
            )
        if name == START_UP:  # the fastest of each side's restarts
            assert row['figure'] == pytest.approx(min(row['details']['large']['seconds']), abs=1e-3)
            assert row['reference'] == pytest.approx(
                min(row['details']['small']['seconds']), abs=1e-3
            )
        if name in SMALL_REQUESTS:
            assert row['details']['service']['errors'] == 0, row
            assert row['details']['bare']['errors'] == 0, row
            assert row['details']['service']['p99_ms'] >= row['details']['service']['p50_ms']
    for name in SMALL_REQUESTS:
        assert name in done.stdout  # the printed table
    # everything it started is stopped, everything it wrote is removed
    assert list(work_dir.iterdir()) == []
    assert _processes_mentioning(str(work_dir)) == []
    assert asyncio.run(_bench_databases(postgres_server_dsn)) <= databases_before
