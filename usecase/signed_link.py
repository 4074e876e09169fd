"""Signed download links: an HMAC over a file's id, an expiry and the file's sha256.

The signature is the only credential of a link, so it binds the exact bytes it was made
for: a replaced file (new id, usually new digest) or a deleted one no longer verifies.
"""

import base64
import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from uuid import UUID

from domain.error import InvalidLinkError
from usecase.get_attachment import AttachmentContent, owned_file
from usecase.interface import Clock, UnitOfWorkFactory
from usecase.store_ports import BlobStore

MIN_LINK_SECONDS = 1
MAX_LINK_SECONDS = 86_400
# keeps these MACs apart from anything else the same secret might ever sign
LINK_SIGNATURE_DOMAIN = b'chat-storage-link-v1\n'


def link_signature(secret: bytes, file_id: UUID, expires: int, sha256: str) -> str:
    """base64url (unpadded) HMAC-SHA256 of the link's fields under `secret`."""
    message = LINK_SIGNATURE_DOMAIN + f'{file_id}\n{expires}\n{sha256}'.encode('ascii')
    digest = hmac.new(secret, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b'=').decode('ascii')


def signature_matches(
    secret: bytes, file_id: UUID, expires: int, sha256: str, signature: str
) -> bool:
    """Whether `signature` is the link signature of these fields (constant time)."""
    expected = link_signature(secret, file_id, expires, sha256).encode('ascii')
    return hmac.compare_digest(expected, signature.encode('utf-8', 'surrogateescape'))


@dataclass(frozen=True, slots=True)
class DownloadLink:
    file_id: UUID
    expires: int
    """Unix seconds; the link is valid strictly before this instant."""
    signature: str

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)


def _unix_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


class CreateDownloadLink:
    """Sign a link to one of the caller's files, valid for `expires_in` seconds."""

    def __init__(self, uow: UnitOfWorkFactory, clock: Clock, secret: bytes) -> None:
        self._uow = uow
        self._clock = clock
        self._secret = secret

    async def __call__(
        self, user_id: UUID, chat_id: UUID, file_id: UUID, expires_in: int
    ) -> DownloadLink:
        if not MIN_LINK_SECONDS <= expires_in <= MAX_LINK_SECONDS:
            raise ValueError(f'expires_in must be {MIN_LINK_SECONDS}-{MAX_LINK_SECONDS}')
        async with self._uow(write=False) as uow:
            _, chat_file = await owned_file(uow, user_id, chat_id, file_id)
        # whole seconds, rounded down: the link never outlives what was asked for
        expires = _unix_seconds(self._clock.now()) + expires_in
        return DownloadLink(
            file_id=chat_file.file_id,
            expires=expires,
            signature=link_signature(self._secret, chat_file.file_id, expires, chat_file.sha256),
        )


class OpenLinkedAttachment:
    """The file a link names, when the link is valid now; `InvalidLinkError` otherwise.

    Without a secret (links off) no link is valid.
    """

    def __init__(
        self,
        uow: UnitOfWorkFactory,
        blobs: BlobStore,
        clock: Clock,
        secret: bytes | None,
    ) -> None:
        self._uow = uow
        self._blobs = blobs
        self._clock = clock
        self._secret = secret

    async def __call__(self, file_id: UUID, expires: int, signature: str) -> AttachmentContent:
        secret = self._secret
        if secret is None or self._clock.now().timestamp() >= expires:
            raise InvalidLinkError
        async with self._uow(write=False) as uow:
            chat_file = await uow.chat_files.get(file_id)
            if chat_file is None or not signature_matches(
                secret, chat_file.file_id, expires, chat_file.sha256, signature
            ):
                raise InvalidLinkError
            chat = await uow.chats.get(chat_file.chat_id)
        if chat is None:
            raise InvalidLinkError
        return AttachmentContent(chat=chat, chat_file=chat_file, blobs=self._blobs)
