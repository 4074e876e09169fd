"""The load generators: wrk for request rates, curl for timed transfers of large files."""

import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.servers import BenchError, require_tool

WRK_THREADS = 2
WRK_SLACK_SECONDS = 30
_UNITS = {'us': 1e-3, 'ms': 1.0, 's': 1000.0, 'm': 60_000.0}
_LATENCY = re.compile(r'^\s*(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$', re.MULTILINE)
_RATE = re.compile(r'^Requests/sec:\s+([\d.]+)', re.MULTILINE)
_TOTAL = re.compile(r'^\s*(\d+) requests in', re.MULTILINE)
_NON_2XX = re.compile(r'Non-2xx or 3xx responses:\s+(\d+)')
_SOCKET = re.compile(r'Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)')


@dataclass(frozen=True, slots=True)
class Rate:
    """What wrk measured for one route."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int  # non-2xx/3xx answers plus socket errors

    def as_dict(self) -> dict[str, float | int]:
        return {
            'requests_per_second': round(self.requests_per_second, 1),
            'p50_ms': round(self.p50_ms, 3),
            'p99_ms': round(self.p99_ms, 3),
            'requests': self.requests,
            'errors': self.errors,
        }


@dataclass(frozen=True, slots=True)
class Request:
    """One route under load; `unique_path` makes every request's path end in a new suffix."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b''
    unique_path: bool = False


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string of ASCII text is a valid Lua string literal


def wrk_script(request: Request) -> str:
    lines = [f'wrk.method = {_lua_string(request.method)}']
    for name, value in request.headers.items():
        lines.append(f'wrk.headers[{_lua_string(name)}] = {_lua_string(value)}')
    if request.body:
        lines.append(f'wrk.body = {_lua_string(request.body.decode("ascii"))}')
    if request.unique_path:
        # each thread gets its own number from setup(); its own counter makes names unique
        lines += [
            'local threads = 0',
            'function setup(thread) threads = threads + 1; thread:set("tid", threads) end',
            'local counter = 0',
            'function request()',
            '  counter = counter + 1',
            f'  return wrk.format(nil, {_lua_string(request.path)} .. tid .. "-" .. counter)',
            'end',
        ]
    return '\n'.join(lines) + '\n'


def parse_wrk(output: str) -> Rate:
    latencies = {int(q): float(v) * _UNITS[unit] for q, v, unit in _LATENCY.findall(output)}
    rate, total = _RATE.search(output), _TOTAL.search(output)
    if rate is None or total is None or set(latencies) != {50, 99}:
        raise BenchError(f'unexpected wrk output:\n{output}')
    non_2xx = _NON_2XX.search(output)
    sockets = _SOCKET.search(output)
    errors = int(non_2xx.group(1)) if non_2xx else 0
    if sockets:
        errors += sum(int(count) for count in sockets.groups())
    return Rate(
        requests_per_second=float(rate.group(1)),
        p50_ms=latencies[50],
        p99_ms=latencies[99],
        requests=int(total.group(1)),
        errors=errors,
    )


def run_wrk(
    base_url: str, request: Request, *, connections: int, seconds: int, script_dir: Path
) -> Rate:
    """`connections` keep-alive connections for `seconds` s on one route."""
    script = script_dir / 'wrk.lua'
    script.write_text(wrk_script(request))
    command = [
        require_tool('wrk'),
        f'--threads={min(WRK_THREADS, connections)}',
        f'--connections={connections}',
        f'--duration={seconds}s',
        '--timeout=10s',
        '--latency',
        f'--script={script}',
        base_url + request.path,
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=seconds + WRK_SLACK_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f'wrk did not end within {seconds + WRK_SLACK_SECONDS} s') from None
    if done.returncode != 0:
        raise BenchError(f'wrk failed ({done.returncode}): {done.stderr or done.stdout}')
    return parse_wrk(done.stdout)


# --- transfers ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    status: int
    seconds: float
    body: str

    def megabytes_per_second(self, size_bytes: int) -> float:
        return size_bytes / self.seconds / 1e6


def curl(arguments: list[str], *, max_seconds: float, body_path: Path | None = None) -> Transfer:
    """One transfer by curl; its wall time as curl measured it (connect to last byte).

    The answer goes to `body_path` (kept as `body` when small), or to /dev/null.
    """
    command = [
        require_tool('curl'),
        '--silent',
        '--show-error',
        '--http1.1',
        '--header',
        'Expect:',  # no 100-continue round trip for either server
        '--max-time',
        str(int(max_seconds)),
        '--output',
        str(body_path or '/dev/null'),
        '--write-out',
        '%{http_code} %{time_total}',
        *arguments,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=max_seconds + 10, check=False
        )
    except subprocess.TimeoutExpired:
        raise BenchError(f'curl did not end within {max_seconds:.0f} s') from None
    if done.returncode != 0:
        raise BenchError(f'curl failed ({done.returncode}): {done.stderr.strip()}')
    status, seconds = done.stdout.split()
    body = ''
    if body_path is not None:
        body = body_path.read_text(errors='replace') if body_path.stat().st_size < 65536 else ''
        body_path.unlink()
    return Transfer(status=int(status), seconds=float(seconds), body=body)


def expect_status(transfer: Transfer, *expected: int) -> Transfer:
    if transfer.status not in expected:
        raise BenchError(f'unexpected HTTP {transfer.status}: {transfer.body[:500]}')
    return transfer
