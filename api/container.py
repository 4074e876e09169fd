"""The services a request can use, built once per process by the composition root."""

from dataclasses import dataclass

from api.settings import Settings
from usecase.append_history import AppendHistory
from usecase.create_chat import CreateChat
from usecase.delete_attachment import ClearAttachments, DeleteAttachment
from usecase.delete_chat import DeleteChat
from usecase.delete_workspace import DeleteWorkspace
from usecase.ensure_workspace import EnsureWorkspace
from usecase.export_chat import ExportChat
from usecase.get_attachment import GetAttachment, ReadAttachment
from usecase.get_chat import GetChat
from usecase.get_workspace import GetWorkspace, GetWorkspaceUsage
from usecase.interface import Clock, IdGenerator, MetadataBackend
from usecase.list_attachments import ListAttachments
from usecase.list_chats import ListChats
from usecase.publish import Publisher
from usecase.read_history import ReadHistory
from usecase.rename_chat import RenameChat
from usecase.sandbox_session import (
    CountActiveSandboxSessions,
    EndSandboxSession,
    GetSandboxSession,
    StartSandboxSession,
)
from usecase.signed_link import CreateDownloadLink, OpenLinkedAttachment
from usecase.store_ports import BlobStore, ChatViews
from usecase.upload_attachment import UploadAttachment
from usecase.write_history import WriteHistory


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    backend: MetadataBackend
    blobs: BlobStore
    publisher: Publisher
    clock: Clock
    ensure_workspace: EnsureWorkspace
    get_workspace: GetWorkspace
    get_workspace_usage: GetWorkspaceUsage
    delete_workspace: DeleteWorkspace
    create_chat: CreateChat
    list_chats: ListChats
    get_chat: GetChat
    rename_chat: RenameChat
    delete_chat: DeleteChat
    read_history: ReadHistory
    write_history: WriteHistory
    append_history: AppendHistory
    upload_attachment: UploadAttachment
    list_attachments: ListAttachments
    get_attachment: GetAttachment
    read_attachment: ReadAttachment
    export_chat: ExportChat
    # None when links are off (no STORAGE_LINK_SECRET)
    create_download_link: CreateDownloadLink | None
    open_linked_attachment: OpenLinkedAttachment
    delete_attachment: DeleteAttachment
    clear_attachments: ClearAttachments
    start_sandbox_session: StartSandboxSession
    get_sandbox_session: GetSandboxSession
    end_sandbox_session: EndSandboxSession
    count_active_sandbox_sessions: CountActiveSandboxSessions


def build_services(
    settings: Settings,
    backend: MetadataBackend,
    blobs: BlobStore,
    views: ChatViews,
    clock: Clock,
    ids: IdGenerator,
) -> Services:
    uow = backend.unit_of_work
    max_file = settings.max_file_bytes
    publisher = Publisher(uow, blobs, views)
    # an empty secret is no secret: links stay off
    secret_text = settings.link_secret.get_secret_value() if settings.link_secret else ''
    link_secret = secret_text.encode() or None
    return Services(
        settings=settings,
        backend=backend,
        blobs=blobs,
        publisher=publisher,
        clock=clock,
        ensure_workspace=EnsureWorkspace(uow, clock, ids, settings.default_quota_bytes),
        get_workspace=GetWorkspace(uow),
        get_workspace_usage=GetWorkspaceUsage(uow),
        delete_workspace=DeleteWorkspace(uow, blobs, views, clock),
        create_chat=CreateChat(uow, views, clock, ids),
        list_chats=ListChats(uow),
        get_chat=GetChat(uow),
        rename_chat=RenameChat(uow, clock),
        delete_chat=DeleteChat(uow, blobs, views, clock),
        read_history=ReadHistory(uow, blobs),
        write_history=WriteHistory(uow, blobs, publisher, clock, max_file),
        append_history=AppendHistory(uow, blobs, publisher, clock, max_file),
        upload_attachment=UploadAttachment(uow, blobs, publisher, clock, max_file),
        list_attachments=ListAttachments(uow),
        get_attachment=GetAttachment(uow),
        read_attachment=ReadAttachment(uow, blobs),
        export_chat=ExportChat(uow, blobs),
        create_download_link=(
            None if link_secret is None else CreateDownloadLink(uow, clock, link_secret)
        ),
        open_linked_attachment=OpenLinkedAttachment(uow, blobs, clock, link_secret),
        delete_attachment=DeleteAttachment(uow, blobs, publisher, clock),
        clear_attachments=ClearAttachments(uow, blobs, publisher, clock),
        start_sandbox_session=StartSandboxSession(uow, clock, ids),
        get_sandbox_session=GetSandboxSession(uow, clock),
        end_sandbox_session=EndSandboxSession(uow),
        count_active_sandbox_sessions=CountActiveSandboxSessions(uow, clock),
    )
