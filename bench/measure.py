"""The measurements of issue 4, each bounded in time, on one metadata backend at a time."""

import json
import os
import re
import statistics
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx

from api.http import CHAT_LIST, encode_cursor
from bench import BARE_PATH
from bench.load import Request, curl, expect_status, run_wrk
from bench.seed import PAGE_ITEMS, SeededWorkspace, seed_workspace
from bench.servers import (
    BenchError,
    NginxServer,
    ServiceServer,
    tree_pss_bytes,
    tree_rss_bytes,
)
from repository.config import MetadataConfig

MIB = 1024 * 1024
RSS_SAMPLE_SECONDS = 0.01
OCTET_STREAM = 'application/octet-stream'
# the names `--only` takes, in the order they run
MEASUREMENTS = frozenset({'transfers', 'rss', 'small', 'growth'})
# restarts timed with each workspace size; the fastest counts (the VM drifts)
START_UPS = 2


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """Sizes and durations of one bench run (`FULL` for `make bench`, `TINY` for the test)."""

    mode: str
    transfer_bytes: int  # the download/upload measurement
    rss_transfer_bytes: int  # the peak memory measurement
    transfer_runs: int  # runs of each side, alternated; medians are quoted
    connections: int
    seconds: int  # each wrk measurement
    growth_small: tuple[int, int]  # (chats, files)
    growth_large: tuple[int, int]
    workers: int = 1
    history_bytes: int = 4096
    append_bytes: int = 200
    small_upload_bytes: int = 4096
    seed_file_bytes: int = 1024
    list_chats: int = 60  # chats in the small-request workspace: a full page of 50

    @property
    def transfer_timeout_seconds(self) -> float:
        # 1 MB/s at worst, and never less than a minute
        return max(60.0, self.rss_transfer_bytes / 1e6)


FULL = BenchConfig(
    mode='full',
    transfer_bytes=100 * MIB,
    rss_transfer_bytes=1024 * MIB,
    transfer_runs=9,  # a multiple of 3: each upload goes first, second and third as often
    connections=64,
    seconds=10,
    growth_small=(100, 10),
    growth_large=(100_000, 10_000),
)
TINY = BenchConfig(
    mode='tiny',
    transfer_bytes=1 * MIB,
    rss_transfer_bytes=4 * MIB,
    transfer_runs=2,
    connections=4,
    seconds=1,
    growth_small=(5, 2),
    growth_large=(50, 20),
)


@dataclass(slots=True)
class Row:
    """One line of the table: the service's figure against its reference in the same run."""

    backend: str
    measurement: str
    unit: str
    figure: float
    reference: float | None
    reference_name: str
    ratio: float | None
    target: str
    ok: bool | None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            'backend': self.backend,
            'measurement': self.measurement,
            'unit': self.unit,
            'figure': round(self.figure, 3),
            'reference': None if self.reference is None else round(self.reference, 3),
            'reference_name': self.reference_name,
            'ratio': None if self.ratio is None else round(self.ratio, 3),
            'target': self.target,
            'ok': self.ok,
            'details': self.details,
        }


def at_least(ratio: float, target: float) -> tuple[str, bool]:
    return f'>= {target}x', ratio >= target


def make_file(path: Path, size: int) -> Path:
    """`size` bytes of incompressible data, written once per bench run."""
    block = os.urandom(MIB)
    with path.open('wb') as out:
        for offset in range(0, size, MIB):
            out.write(block[: min(MIB, size - offset)])
        out.flush()
        os.fsync(out.fileno())
    return path


def evict_from_page_cache(path: Path) -> None:
    """Drop the file's (clean) pages from the page cache, so the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


class Caller:
    """Set-up requests of one user (untimed), failing loudly on any unexpected answer."""

    def __init__(self, base_url: str, user_id: UUID | None = None) -> None:
        self.user_id = user_id or uuid4()
        self.headers = {'X-User-Id': str(self.user_id)}
        self.client = httpx.Client(base_url=base_url, headers=self.headers, timeout=60.0)

    def call(
        self,
        method: str,
        path: str,
        expected: int,
        *,
        json: Mapping[str, str] | None = None,
        content: bytes | None = None,
    ) -> dict[str, Any]:
        response = self.client.request(method, path, json=json, content=content)
        if response.status_code != expected:
            raise BenchError(f'{method} {path}: {response.status_code} {response.text[:300]}')
        return dict(response.json()) if response.content else {}

    def workspace(self) -> str:
        return str(self.call('PUT', '/v1/workspace', 201)['workspace_id'])

    def chat(self, title: str) -> str:
        return str(self.call('POST', '/v1/chats', 201, json={'title': title})['chat_id'])

    def close(self) -> None:
        self.client.close()


def mebibytes(size: int) -> str:
    return f'{size / MIB:.0f} MiB'


class TransferSides:
    """One large file's download and upload on each side: the service and nginx."""

    def __init__(self, run: 'BackendRun', caller: Caller) -> None:
        self.run, self.caller = run, caller
        self.source = run.sources['transfer']
        self.size = run.config.transfer_bytes
        self.timeout = run.config.transfer_timeout_seconds
        workspace_id = caller.workspace()
        self.chat_id = caller.chat('transfers')
        self.files = f'{run.service.base_url}/v1/chats/{self.chat_id}/files'
        self.user = ['--header', f'X-User-Id: {caller.user_id}']
        self.octets = ['--header', f'Content-Type: {OCTET_STREAM}']
        stored, _ = self._service_upload(
            [*self.octets, '--upload-file', str(self.source), f'{self.files}/by-name/d.bin']
        )
        chat_dir = run.data_dir / 'workspaces' / workspace_id / 'chats' / self.chat_id
        self.stored_path = chat_dir / 'd.bin'
        self.downloads = {
            'service': [*self.user, f'{self.files}/{stored["file_id"]}/content'],
            'nginx': [run.nginx.data_url(self.stored_path)],
        }

    def _service_upload(self, arguments: list[str]) -> tuple[dict[str, Any], float]:
        """The stored file's record and the upload's wall time."""
        done = expect_status(
            curl([*self.user, *arguments], max_seconds=self.timeout, body_path=self.run.scratch()),
            201,
        )
        return dict(json.loads(done.body)), done.seconds

    def download(self, side: str) -> float:
        """MB/s of one download by `side` ('service' or 'nginx')."""
        done = expect_status(curl(self.downloads[side], max_seconds=self.timeout), 200)
        return done.megabytes_per_second(self.size)

    def upload(self, side: str, name: str, *, keep: bool = False) -> float:
        """MB/s of one upload by `side` ('raw', 'multipart' or 'nginx'); deleted unless `keep`."""
        if side == 'nginx':
            url = f'{self.run.nginx.base_url}/put/{name}'
            upload = [*self.octets, '--upload-file', str(self.source), url]
            done = expect_status(curl(upload, max_seconds=self.timeout), 201, 204)
            if not keep:
                expect_status(curl(['--request', 'DELETE', url], max_seconds=60), 204)
            return done.megabytes_per_second(self.size)
        if side == 'raw':
            arguments = [
                *self.octets,
                '--upload-file',
                str(self.source),
                f'{self.files}/by-name/{name}',
            ]
        else:
            part = f'file=@{self.source};type={OCTET_STREAM}'
            arguments = ['--form', f'name={name}', '--form', part, self.files]
        stored, seconds = self._service_upload(arguments)
        if not keep:
            self.caller.call('DELETE', f'/v1/chats/{self.chat_id}/files/{stored["file_id"]}', 204)
        return self.size / seconds / 1e6


# the growth row of the list's last page
LAST_PAGE = 'last page'


def _page_items(name: str, workspace: SeededWorkspace) -> int | None:
    """How many items a growth request's answer lists (None: not a list)."""
    limit = re.search(r'\?limit=(\d+)', name)
    if limit is None:
        return None
    if not name.startswith('GET /v1/chats?'):
        return min(int(limit[1]), workspace.files)
    # the last page starts after `last_page_key`: at most a page before the end
    chats = workspace.chats - 1 if name.endswith(LAST_PAGE) else workspace.chats
    return min(int(limit[1]), chats)


def _combined(rates: list[dict[str, Any]]) -> dict[str, Any]:
    """Runs of equal duration as one: requests and errors summed, the mean rate, each run."""
    return {
        'requests_per_second': statistics.fmean(rate['requests_per_second'] for rate in rates),
        'requests': sum(rate['requests'] for rate in rates),
        'errors': sum(rate['errors'] for rate in rates),
        'runs': rates,
    }


@dataclass
class BackendRun:
    """Everything measured on one backend: the service, nginx, and a work directory."""

    backend: str
    config: BenchConfig
    metadata: MetadataConfig
    data_dir: Path
    work_dir: Path
    log_dir: Path
    nginx: NginxServer
    sources: Mapping[str, Path]
    service: ServiceServer
    rows: list[Row] = field(default_factory=list)

    def log(self, message: str) -> None:
        print(f'[{time.strftime("%H:%M:%S")}] {self.backend}: {message}', flush=True)

    def scratch(self) -> Path:
        return self.work_dir / f'answer-{uuid4().hex}'

    # --- downloads and uploads of one large file ------------------------------------------

    def transfers(self) -> None:
        config = self.config
        caller = Caller(self.service.base_url)
        try:
            sides = TransferSides(self, caller)
            self.log(
                f'download and upload {mebibytes(config.transfer_bytes)}, '
                f'{config.transfer_runs} runs each'
            )
            runs: dict[str, list[float]] = {
                side: []
                for side in ('download service', 'download nginx', 'raw', 'multipart', 'nginx')
            }
            uploads = ['raw', 'multipart', 'nginx']
            for run in range(config.transfer_runs):
                # alternate which side goes first, run by run
                for side in ('service', 'nginx')[:: 1 if run % 2 == 0 else -1]:
                    runs[f'download {side}'].append(sides.download(side))
                for side in uploads[run % 3 :] + uploads[: run % 3]:
                    runs[side].append(sides.upload(side, f'u-{side}-{run}.bin'))

            # the cold figures: from disk, and into memory the page cache did not just free
            cold: dict[str, float] = {}
            for side in ('service', 'nginx'):
                evict_from_page_cache(sides.stored_path)
                cold[f'download {side}'] = sides.download(side)
            for side in uploads:
                cold[side] = sides.upload(side, f'cold-{side}.bin', keep=True)
        finally:
            caller.close()

        medians = {side: statistics.median(values) for side, values in runs.items()}
        ratio = medians['download service'] / medians['download nginx']
        target, ok = at_least(ratio, 0.8)
        self._transfer_row(
            f'download {mebibytes(self.config.transfer_bytes)}',
            medians['download service'],
            medians['download nginx'],
            'nginx GET',
            ratio,
            target,
            ok,
            runs,
            'download',
        )
        cold_ratio = cold['download service'] / cold['download nginx']
        self._transfer_row(
            'download, cold (evicted from page cache)',
            cold['download service'],
            cold['download nginx'],
            'nginx GET',
            cold_ratio,
            '-',
            None,
            {},
            'download',
        )
        for side, label, floor in (
            ('raw', 'upload PUT by-name', 0.7),
            ('multipart', 'upload multipart', 0.6),
        ):
            ratio = medians[side] / medians['nginx']
            target, ok = at_least(ratio, floor)
            self._transfer_row(
                f'{label} {mebibytes(self.config.transfer_bytes)}',
                medians[side],
                medians['nginx'],
                'nginx PUT',
                ratio,
                target,
                ok,
                runs,
                side,
            )
            self._transfer_row(
                f'{label}, cold (files kept)',
                cold[side],
                cold['nginx'],
                'nginx PUT',
                cold[side] / cold['nginx'],
                '-',
                None,
                {},
                side,
            )

    def _transfer_row(
        self,
        measurement: str,
        figure: float,
        reference: float,
        reference_name: str,
        ratio: float,
        target: str,
        ok: bool | None,
        runs: Mapping[str, list[float]],
        side: str,
    ) -> None:
        details: dict[str, Any] = {}
        if runs:
            other = 'download nginx' if side == 'download' else 'nginx'
            own = 'download service' if side == 'download' else side
            details = {
                'runs': [round(v, 1) for v in runs[own]],
                'reference_runs': [round(v, 1) for v in runs[other]],
                'size_bytes': self.config.transfer_bytes,
            }
        self.rows.append(
            Row(
                self.backend,
                measurement,
                'MB/s',
                figure,
                reference,
                reference_name,
                ratio,
                target,
                ok,
                details,
            )
        )

    # --- peak resident memory during a concurrent upload and download -------------------

    def peak_memory(self) -> None:
        config, source = self.config, self.sources['rss']
        size = config.rss_transfer_bytes
        caller = Caller(self.service.base_url)
        timeout = config.transfer_timeout_seconds
        try:
            caller.workspace()
            chat_id = caller.chat('memory')
            files = f'{self.service.base_url}/v1/chats/{chat_id}/files'
            user = ['--header', f'X-User-Id: {caller.user_id}']
            octets = ['--header', f'Content-Type: {OCTET_STREAM}']
            stored = json.loads(
                expect_status(
                    curl(
                        [*user, *octets, '--upload-file', str(source), f'{files}/by-name/down.bin'],
                        max_seconds=timeout,
                        body_path=self.scratch(),
                    ),
                    201,
                ).body
            )
            self.log(f'peak memory while uploading and downloading {mebibytes(size)} at once')
            baseline = tree_rss_bytes(self.service.pid)
            peak, largest = sum(baseline), max(baseline)
            peak_pss = tree_pss_bytes(self.service.pid)
            failures: list[BaseException] = []

            def transfer(arguments: list[str], *expected: int) -> None:
                try:
                    expect_status(
                        curl(arguments, max_seconds=timeout, body_path=self.scratch()), *expected
                    )
                except BaseException as error:  # noqa: BLE001 - re-raised by the main thread
                    failures.append(error)

            clients = [
                threading.Thread(
                    target=transfer,
                    args=(
                        [*user, *octets, '--upload-file', str(source), f'{files}/by-name/up.bin'],
                        201,
                    ),
                ),
                threading.Thread(
                    target=transfer, args=([*user, f'{files}/{stored["file_id"]}/content'], 200)
                ),
            ]
            for client in clients:
                client.start()
            while any(client.is_alive() for client in clients):
                sample = tree_rss_bytes(self.service.pid)
                peak, largest = max(peak, sum(sample)), max(largest, *sample)
                peak_pss = max(peak_pss, tree_pss_bytes(self.service.pid))
                time.sleep(RSS_SAMPLE_SECONDS)
            for client in clients:
                client.join()
            if failures:
                raise failures[0]
            caller.call('DELETE', f'/v1/chats/{chat_id}/files', 204)
        finally:
            caller.close()
        self.rows.append(
            Row(
                self.backend,
                f'peak RSS, {mebibytes(size)} up + down at once',
                'MB',
                peak / 1e6,
                None,
                '',
                None,
                '< 150 MB',
                peak / 1e6 < 150,
                {
                    'baseline_mb': round(sum(baseline) / 1e6, 1),
                    'largest_process_mb': round(largest / 1e6, 1),
                    'peak_pss_mb': round(peak_pss / 1e6, 1),
                    'process_count': len(baseline),
                    'transfer_bytes': size,
                    'processes': 'server process and its workers, sum of VmRSS sampled every 10 ms'
                    ' (peak_pss_mb: the same with shared pages counted once)',
                },
            )
        )

    # --- small requests against the bare route ---------------------------------------------

    def rate(self, base_url: str, request: Request) -> dict[str, Any]:
        return run_wrk(
            base_url,
            request,
            connections=self.config.connections,
            seconds=self.config.seconds,
            script_dir=self.work_dir,
        ).as_dict()

    def small_requests(self) -> None:
        config = self.config
        caller = Caller(self.service.base_url)
        try:
            caller.workspace()
            chat_ids = [caller.chat(f'chat {index}') for index in range(config.list_chats)]
            history_chat, append_chat = chat_ids[1], chat_ids[2]
            caller.call(
                'PUT',
                f'/v1/chats/{history_chat}/history',
                200,
                content=b'h' * (config.history_bytes - 1) + b'\n',
            )
        finally:
            caller.close()
        headers = caller.headers
        json_headers = {**headers, 'Content-Type': 'application/json'}
        routes = {
            'GET /v1/chats/{id}': Request('GET', f'/v1/chats/{chat_ids[0]}', headers),
            f'GET history of {config.history_bytes // 1024} KiB': Request(
                'GET', f'/v1/chats/{history_chat}/history', headers
            ),
            'GET /v1/chats?limit=50': Request('GET', '/v1/chats?limit=50', headers),
            f'POST history append of {config.append_bytes} B': Request(
                'POST',
                f'/v1/chats/{append_chat}/history',
                {**headers, 'Content-Type': 'text/markdown'},
                b'a' * (config.append_bytes - 1) + b'\n',
            ),
            'POST /v1/chats': Request('POST', '/v1/chats', json_headers, b'{"title":"bench"}'),
        }
        self.log(
            f'small requests: {len(routes)} routes, each after the bare route, '
            f'{config.seconds} s each, {config.connections} connections'
        )
        bare_request = Request('GET', BARE_PATH, headers)
        for name, request in routes.items():
            # the bare route is measured right before each route: this VM's speed drifts
            # by up to 2x within minutes, and a ratio must compare like with like
            bare = self.rate(self.service.base_url, bare_request)
            measured = self.rate(self.service.base_url, request)
            ratio = measured['requests_per_second'] / bare['requests_per_second']
            target, ok = at_least(ratio, 0.5)
            ok = ok and measured['errors'] == 0
            self.rows.append(
                Row(
                    self.backend,
                    name,
                    'req/s',
                    measured['requests_per_second'],
                    bare['requests_per_second'],
                    f'bare route {BARE_PATH}',
                    ratio,
                    target,
                    ok,
                    {
                        'service': measured,
                        'bare': bare,
                        'connections': config.connections,
                        'seconds': config.seconds,
                    },
                )
            )

    # --- growth: the same requests in a small and a large workspace ------------------------

    def growth(self) -> None:
        config = self.config
        seeded: dict[str, SeededWorkspace] = {}
        start_ups: dict[str, list[float]] = {}
        for label, (chats, files) in (
            ('small', config.growth_small),
            ('large', config.growth_large),
        ):
            started = time.monotonic()
            seeded[label] = seed_workspace(
                self.metadata,
                self.data_dir,
                chats=chats,
                files=files,
                file_bytes=config.seed_file_bytes,
            )
            self.log(f'seeded {chats} chats / {files} files in {time.monotonic() - started:.1f} s')
            # a restart reads the whole store (recovery's usage check): with the small
            # workspace alone, then with the large one as well
            start_ups[label] = [self.service.restart() for _ in range(START_UPS)]
            self.log(
                f'ready after a restart in {", ".join(f"{t:.2f}" for t in start_ups[label])} s'
            )
        self._start_up_row(seeded, start_ups)

        # the small workspace's chat has fewer files than a page of 50: its page is shorter,
        # and each item costs the response ~30 µs of CPU. The extra row lists a page both
        # workspaces fill, so that it compares workspace sizes and nothing else
        full_page = min(PAGE_ITEMS, config.growth_small[1])

        def requests(workspace: SeededWorkspace) -> dict[str, Request]:
            headers = {'X-User-Id': str(workspace.user_id)}
            chat = workspace.files_chat_id
            deep = encode_cursor(workspace.last_page_key, CHAT_LIST)
            return {
                f'GET /v1/chats?limit={PAGE_ITEMS}': Request(
                    'GET', f'/v1/chats?limit={PAGE_ITEMS}', headers
                ),
                # a client paging to the end: the seeded key is a page before the end
                f'GET /v1/chats?limit={PAGE_ITEMS}, {LAST_PAGE}': Request(
                    'GET', f'/v1/chats?limit={PAGE_ITEMS}&cursor={deep}', headers
                ),
                f'GET …/files?limit={PAGE_ITEMS}': Request(
                    'GET', f'/v1/chats/{chat}/files?limit={PAGE_ITEMS}', headers
                ),
                f'GET …/files?limit={full_page}': Request(
                    'GET', f'/v1/chats/{chat}/files?limit={full_page}', headers
                ),
                f'PUT …/files/by-name of {config.small_upload_bytes // 1024} KiB': Request(
                    'PUT',
                    f'/v1/chats/{chat}/files/by-name/bench-',
                    {**headers, 'Content-Type': OCTET_STREAM},
                    b'u' * config.small_upload_bytes,
                    unique_path=True,
                ),
            }

        small, large = requests(seeded['small']), requests(seeded['large'])
        self.log(f'growth: {len(small)} routes x 2 workspaces x 2 runs x {config.seconds} s')
        for name in small:
            # small, large, large, small: whichever goes first warms caches (and the machine
            # drifts) for both alike; each side's rate is over its two runs
            runs: dict[str, list[dict[str, Any]]] = {'small': [], 'large': []}
            for label in ('small', 'large', 'large', 'small'):
                routes = small if label == 'small' else large
                runs[label].append(self.rate(self.service.base_url, routes[name]))
            measured = {label: _combined(rates) for label, rates in runs.items()}
            # large/small of the time a request takes: the inverse of the rates' ratio
            ratio = (
                measured['small']['requests_per_second'] / measured['large']['requests_per_second']
            )
            errors = measured['small']['errors'] + measured['large']['errors']
            self.rows.append(
                Row(
                    self.backend,
                    f'growth {name}',
                    'req/s',
                    measured['large']['requests_per_second'],
                    measured['small']['requests_per_second'],
                    'same request, small workspace',
                    ratio,
                    '<= 1.5 (large/small time)',
                    ratio <= 1.5 and errors == 0,
                    {
                        'small_workspace': {
                            'chats': seeded['small'].chats,
                            'files': seeded['small'].files,
                            'page_items': _page_items(name, seeded['small']),
                            **measured['small'],
                        },
                        'large_workspace': {
                            'chats': seeded['large'].chats,
                            'files': seeded['large'].files,
                            'page_items': _page_items(name, seeded['large']),
                            **measured['large'],
                        },
                    },
                )
            )

    def _start_up_row(
        self, seeded: Mapping[str, SeededWorkspace], start_ups: Mapping[str, list[float]]
    ) -> None:
        small, large = min(start_ups['small']), min(start_ups['large'])
        ratio = large / small
        self.rows.append(
            Row(
                self.backend,
                'growth start-up until ready',
                's',
                large,
                small,
                'same start, small workspace only',
                ratio,
                '<= 1.5 (large/small time)',
                ratio <= 1.5,
                {
                    label: {
                        'chats': seeded[label].chats,
                        'files': seeded[label].files,
                        'seconds': [round(t, 3) for t in start_ups[label]],
                    }
                    for label in ('small', 'large')
                },
            )
        )

    def all(self, only: frozenset[str] = MEASUREMENTS) -> list[Row]:
        steps = {
            'transfers': self.transfers,
            'rss': self.peak_memory,
            'small': self.small_requests,
            'growth': self.growth,
        }
        for name, step in steps.items():
            if name not in only:
                continue
            started = time.monotonic()
            step()
            self.log(f'{step.__name__} done in {time.monotonic() - started:.0f} s')
        return self.rows
