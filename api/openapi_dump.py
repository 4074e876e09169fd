"""Write the service's OpenAPI document: `python -m api.openapi_dump docs/openapi.json`.

`make openapi` runs it. Stable output (sorted keys, indent 2, trailing newline), from
default settings rather than the environment, so that the file only changes when the
API does; `test/api/test_openapi.py` fails when the committed file is stale.
"""

import json
import sys
from pathlib import Path
from typing import Any

from api.app import create_app
from api.settings import Settings

DOCUMENT_PATH = Path('docs/openapi.json')
REGENERATE = 'make openapi  (or: .venv/bin/python -m api.openapi_dump docs/openapi.json)'


def openapi_document() -> dict[str, Any]:
    # defaults, not the environment: the document must not depend on who generates it
    return create_app(Settings.model_construct()).openapi()


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + '\n'


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = render(openapi_document())
    if not args:
        sys.stdout.write(text)
        return 0
    target = Path(args[0])
    staging = target.with_name(f'.{target.name}.tmp')
    staging.write_text(text, encoding='utf-8')
    staging.replace(target)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
