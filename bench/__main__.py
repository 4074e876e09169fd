"""`python -m bench [--tiny]`: start everything on 127.0.0.1, measure, print, write JSON, stop."""

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench.measure import FULL, MEASUREMENTS, TINY, BackendRun, BenchConfig, Row, make_file
from bench.servers import (
    ROOT,
    BenchError,
    NginxServer,
    ServiceLaunch,
    ServiceServer,
    postgres_database,
    require_tool,
)
from repository.config import MetadataConfig

DEFAULT_POSTGRES_DSN = 'postgresql://postgres@127.0.0.1:5432/postgres'
RESULTS_DIR = ROOT / 'bench' / 'results'
BACKENDS = ('sqlite', 'postgres')


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m bench', description=__doc__)
    parser.add_argument('--tiny', action='store_true', help='tiny sizes and 1 s runs (the test)')
    parser.add_argument('--backends', default=','.join(BACKENDS), help='sqlite,postgres')
    parser.add_argument('--workers', type=int, default=1, help='server worker processes')
    parser.add_argument(
        '--postgres-dsn',
        default=os.environ.get('BENCH_POSTGRES_DSN', DEFAULT_POSTGRES_DSN),
        help='a server where the bench may create and drop a database (env BENCH_POSTGRES_DSN)',
    )
    parser.add_argument(
        '--only',
        default=','.join(sorted(MEASUREMENTS)),
        help='a comma list of measurements to run: transfers,rss,small,growth (default: all)',
    )
    parser.add_argument('--results-dir', type=Path, default=RESULTS_DIR)
    parser.add_argument(
        '--work-dir', type=Path, default=None, help='parent of the temporary data (default: TMPDIR)'
    )
    args = parser.parse_args(argv)
    unknown = set(args.backends.split(',')) - set(BACKENDS)
    if unknown:
        parser.error(f'unknown backends: {", ".join(sorted(unknown))}')
    unknown = set(args.only.split(',')) - MEASUREMENTS
    if unknown:
        parser.error(f'unknown measurements: {", ".join(sorted(unknown))}')
    return args


def _stop_on_sigterm(signum: int, _frame: FrameType | None) -> None:
    # as for Ctrl-C: unwind, so every server is stopped and every file removed
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def backend_env(
    backend: str, data_dir: Path, config: BenchConfig, postgres_dsn: str
) -> Iterator[tuple[dict[str, str], MetadataConfig]]:
    env = {
        'STORAGE_DATA_DIR': str(data_dir),
        'STORAGE_METADATA_BACKEND': backend,
        'STORAGE_DEFAULT_QUOTA_BYTES': str(1 << 40),
        'STORAGE_MAX_FILE_BYTES': str(2 * max(config.rss_transfer_bytes, config.transfer_bytes)),
    }
    if backend == 'sqlite':
        yield env, MetadataConfig(backend='sqlite', sqlite_path=data_dir / 'metadata.db')
        return
    with postgres_database(postgres_dsn) as dsn:
        yield (
            {**env, 'STORAGE_POSTGRES_DSN': dsn},
            MetadataConfig(backend='postgres', postgres_dsn=dsn),
        )


def machine() -> dict[str, Any]:
    meminfo = Path('/proc/meminfo').read_text().split()
    return {
        'cpus': os.cpu_count(),
        'load_average': [round(load, 2) for load in os.getloadavg()],
        'memory_mib': int(meminfo[meminfo.index('MemTotal:') + 1]) // 1024,
        'kernel': platform.release(),
        'python': platform.python_version(),
    }


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return ''
    return f'{value:,.1f} {unit}'


def table(rows: list[Row]) -> str:
    header = ('backend', 'measurement', 'service', 'reference', 'ratio', 'target', 'ok')
    lines = [header]
    for row in rows:
        figure = _figure(row.figure, row.unit)
        service = row.details.get('service')
        if isinstance(service, dict):
            figure += f' (p50 {service["p50_ms"]:.1f} ms, p99 {service["p99_ms"]:.1f} ms)'
        if 'baseline_mb' in row.details:
            figure += (
                f' ({row.details["process_count"]} processes, idle {row.details["baseline_mb"]:.0f}'
                f' MB; largest process {row.details["largest_process_mb"]:.0f} MB;'
                f' PSS {row.details["peak_pss_mb"]:.0f} MB)'
            )
        reference = _figure(row.reference, row.unit)
        if row.reference_name:
            reference += f' ({row.reference_name})'
        if row.details.get('large_workspace', {}).get('page_items') is not None:
            figure += f' ({row.details["large_workspace"]["page_items"]} items)'
            reference += f' ({row.details["small_workspace"]["page_items"]} items)'
        lines.append(
            (
                row.backend,
                row.measurement,
                figure,
                reference,
                '' if row.ratio is None else f'{row.ratio:.2f}',
                row.target,
                {True: 'yes', False: 'NO', None: '-'}[row.ok],
            )
        )
    widths = [max(len(line[column]) for line in lines) for column in range(len(header))]
    rendered = [
        '| '
        + ' | '.join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        + ' |'
        for line in lines
    ]
    rendered.insert(1, '|-' + '-|-'.join('-' * width for width in widths) + '-|')
    return '\n'.join(rendered)


def write_results(results_dir: Path, document: dict[str, Any], prefix: str) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')
    text = json.dumps(document, indent=2) + '\n'
    path = results_dir / f'{prefix}{stamp}.json'
    path.write_text(text)
    (results_dir / f'{prefix}latest.json').write_text(text)
    return path


def run(args: argparse.Namespace) -> dict[str, Any]:
    config = TINY if args.tiny else FULL
    config = BenchConfig(**{**asdict(config), 'workers': args.workers})
    for tool in ('nginx', 'wrk', 'curl'):
        require_tool(tool)
    launch = ServiceLaunch.detect(config.workers)
    only = frozenset(args.only.split(','))
    started_at = datetime.now(UTC)
    began = time.monotonic()
    rows: list[Row] = []
    work_dir = Path(tempfile.mkdtemp(prefix='chat-storage-bench-', dir=args.work_dir))
    print(f'chat-storage bench ({config.mode}); working in {work_dir}', flush=True)
    print(f'server: {launch.describe()}', flush=True)
    try:
        log_dir = work_dir / 'logs'
        sources = work_dir / 'sources'
        for directory in (log_dir, sources):
            directory.mkdir()
        # the source files the chosen measurements upload: (measurement, name, size)
        needed = (
            ('transfers', 'transfer', config.transfer_bytes),
            ('rss', 'rss', config.rss_transfer_bytes),
        )
        files = {
            name: make_file(sources / f'{name}.bin', size)
            for measurement, name, size in needed
            if measurement in only
        }
        with NginxServer(work_dir, work_dir, log_dir, workers=config.workers) as nginx:
            for backend in args.backends.split(','):
                data_dir = work_dir / backend
                with (
                    backend_env(backend, data_dir, config, args.postgres_dsn) as (env, metadata),
                    ServiceServer(launch, env, log_dir, name=f'service-{backend}') as service,
                ):
                    measured = BackendRun(
                        backend=backend,
                        config=config,
                        metadata=metadata,
                        data_dir=data_dir,
                        work_dir=work_dir,
                        log_dir=log_dir,
                        nginx=nginx,
                        sources=files,
                        service=service,
                    )
                    rows += measured.all(only)
                started = time.monotonic()
                shutil.rmtree(data_dir)
                print(f'{backend}: stopped, data removed in {time.monotonic() - started:.0f} s')
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return {
        'mode': config.mode,
        'started_at': started_at.isoformat(),
        'seconds': round(time.monotonic() - began, 1),
        'server': launch.describe(),
        'measurements': sorted(only),
        'config': asdict(config),
        'machine': machine(),
        'rows': [row.as_dict() for row in rows],
        'table': table(rows),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        document = run(args)
    except BenchError as error:
        print(f'bench: {error}', file=sys.stderr)
        return 1
    print()
    print(document['table'])
    prefix = 'tiny-' if args.tiny else ''
    if set(document['measurements']) != set(MEASUREMENTS):
        # a partial run never replaces the full run's latest.json
        prefix += 'only-' + '-'.join(document['measurements']) + '-'
    path = write_results(args.results_dir, document, prefix)
    print(f'\n{len(document["rows"])} figures in {document["seconds"]} s; written to {path}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
