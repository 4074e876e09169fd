"""URL convertors of our own, and what of a request's path middleware and logs may use."""

from starlette.convertors import CONVERTOR_TYPES, Convertor, register_url_convertor
from starlette.types import Scope


class AnythingConvertor(Convertor[str]):
    """The rest of the path, newlines included (`path` stops at a line feed).

    Attachment names are validated by the domain, which refuses control characters with
    `invalid_attachment_name`; the router must not turn them into a 404 first.
    """

    regex = '(?s:.*)'

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


ANYTHING = 'anything'

# routes compile their paths when their module is imported: routers that use
# `{…:anything}` import this module first
if ANYTHING not in CONVERTOR_TYPES:
    register_url_convertor(ANYTHING, AnythingConvertor())


def app_path(scope: Scope) -> str:
    """The path below the app's root path (the app may be mounted, or served under one),
    as its routes match it: what the middleware that pick routes by path must look at.

    Starlette's rule (`starlette._utils.get_route_path`): the root is cut off only where
    a path segment ends, so `/storagex/v1` stays whole under `/storage`, and a server that
    sets a root path without putting it in the path (`/v1/…` under `/`) is left as is.
    """
    path: str = scope.get('path', '')
    root: str = scope.get('root_path', '')
    if not root or not path.startswith(root):
        return path
    if path == root:
        return ''
    return path[len(root) :] if path[len(root)] == '/' else path


UNMATCHED_ROUTE = '<unmatched>'
# any other method would make a label of its own for every spelling a client sends
METHODS = frozenset({'GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'})


def route_template(scope: Scope) -> str:
    """The matched route's path template (set by the router), or a fixed placeholder: what
    a log line or a metric label may say of a path, which holds ids and file names."""
    route = scope.get('route')
    template: object = getattr(route, 'path_format', None) or getattr(route, 'path', None)
    return template if isinstance(template, str) else UNMATCHED_ROUTE


def method_label(scope: Scope) -> str:
    """The request's method, or `OTHER` for one outside the fixed set."""
    method = str(scope['method']).upper()
    return method if method in METHODS else 'OTHER'
