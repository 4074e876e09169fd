"""`chat-storage` command line: `serve` (the default) starts the HTTP server."""

import argparse
import sys

import uvicorn

from api.settings import SettingsError, load_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='chat-storage', description=__doc__)
    commands = parser.add_subparsers(dest='command')
    serve = commands.add_parser('serve', help='run the HTTP server (STORAGE_HOST:STORAGE_PORT)')
    serve.add_argument('--workers', type=int, default=1, help='uvicorn worker processes')
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as error:
        print(f'chat-storage: {error}', file=sys.stderr)  # noqa: T201 - the one clear line
        return 2
    uvicorn.run(
        'api.app:create_app',
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=getattr(args, 'workers', 1),
        log_level='info',
    )
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
