"""The composition root: `create_app()` wires settings, backends, storage and routers."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import TypedDict

import anyio
from fastapi import FastAPI

from adapter.blob_store import BlobStore
from adapter.chat_view import ChatViews
from adapter.clock import SystemClock
from adapter.id_generator import UuidGenerator
from adapter.legacy_layout import LegacyLayout
from adapter.sweep_mark import FileSweepMarks
from api.body import install_body_chunk_timeout, install_parsed_body_limit
from api.container import Services, build_services
from api.drain import install_drain
from api.gateway import install_identity_first
from api.logs import ensure_logging
from api.observability import install_observability
from api.openapi_docs import finish_openapi
from api.problems import install_problem_handlers
from api.routers import chats, export, files, health, history, links, sandbox, workspace
from api.settings import Settings, SettingsError, load_settings, metadata_config
from repository.factory import create_metadata_backend
from usecase.collect_garbage import CollectGarbage
from usecase.convert_legacy import ConvertLegacy
from usecase.interface import Clock, IdGenerator, MetadataBackend, Tracer
from usecase.start_store import StartStore
from usecase.sweep_views import SweepViews

logger = logging.getLogger('chat_storage')

DESCRIPTION = """\
Storage for workspaces, chats, their `history.md` and attachments.

Every `/v1` request carries the caller's id in `X-User-Id` (set by the trusted gateway)
and, when the service has a gateway token, `Authorization: Bearer <token>`. Every error is
an RFC 9457 `application/problem+json` body whose `code` is the stable token to branch on.
"""


class State(TypedDict):
    services: Services


def create_app(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    ids: IdGenerator | None = None,
    tracer: Tracer | None = None,
) -> FastAPI:
    """Build the application; nothing connects until the lifespan starts."""
    if settings is None:
        try:
            settings = load_settings()
        except SettingsError as error:
            # one clear line instead of a traceback, then stop
            raise SystemExit(f'chat-storage: {error}') from None
    resolved: Settings = settings
    ensure_logging(resolved.log_level, resolved.log_format)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[State]:
        backend = create_metadata_backend(metadata_config(resolved))
        await backend.connect()
        try:
            await backend.migrate()
            blobs = BlobStore(resolved.data_dir)
            views = ChatViews(resolved.data_dir)
            used_clock = clock or SystemClock()
            services = build_services(
                resolved, backend, blobs, views, used_clock, ids or UuidGenerator()
            )
            store = _store_maintenance(resolved, backend, blobs, views, services, used_clock)
            converted = await store()
            logger.info('chat-storage ready (metadata: %s)', backend.backend_name)
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(partial(store.maintain_periodically, every_chat_first=converted))
                yield {'services': services}
                tasks.cancel_scope.cancel()
        finally:
            await backend.close()

    app = FastAPI(
        title='chat-storage',
        version='1.0.0',
        summary='Workspaces, chats, history and attachments over HTTP',
        description=DESCRIPTION,
        lifespan=lifespan,
        # a path with a slash too many is a 404 problem like any unknown path: Starlette's
        # redirect would build its `Location` from the `Host` the client sent
        redirect_slashes=False,
        openapi_tags=[
            {'name': 'workspace', 'description': "The caller's one workspace and its quota"},
            {'name': 'chats', 'description': 'Chats of the workspace'},
            {'name': 'history', 'description': "A chat's history.md"},
            {'name': 'files', 'description': "A chat's attachments"},
            {'name': 'sandbox', 'description': 'Sandbox sessions working in a chat directory'},
            {'name': 'operations', 'description': 'Health and readiness'},
        ],
    )
    install_problem_handlers(app)
    for module in (workspace, chats, history, files, links, export, sandbox, health):
        app.include_router(module.router)
    install_parsed_body_limit(app)
    install_identity_first(app, resolved.gateway_token)
    install_observability(app, tracer=tracer, settings=resolved)
    # unread bodies of early refusals are read so that the answer arrives
    install_drain(app)
    # outermost: every wait for a body's next chunk is bounded, the drain's too
    install_body_chunk_timeout(app, resolved.body_chunk_timeout_seconds)
    _register_problem_schema(app)
    return app


def _store_maintenance(
    settings: Settings,
    backend: MetadataBackend,
    blobs: BlobStore,
    views: ChatViews,
    services: Services,
    clock: Clock,
) -> StartStore:
    """Conversion of an earlier layout, the view sweep and garbage collection (ADR 027)."""
    uow = backend.unit_of_work
    return StartStore(
        convert=ConvertLegacy(uow, blobs, LegacyLayout(settings.data_dir)),
        sweep=SweepViews(uow, views, services.publisher, FileSweepMarks(settings.data_dir), clock),
        collect=CollectGarbage(uow, blobs, settings.garbage_grace_seconds),
    )


def _register_problem_schema(app: FastAPI) -> None:
    """Finish the generated OpenAPI document (shared `Problem` schema, gateway header)."""
    original = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        # a signed link's parameters are plain strings, read by the route: a malformed
        # link is `403 invalid_link`, never a 422
        return finish_openapi(
            original(),
            never_invalid=frozenset({(links.LINK_PATH, 'get')}),
            body_models=(links.LinkRequest,),
        )

    app.openapi = openapi  # type: ignore[method-assign]
