from domain.chat import Chat
from domain.content import StagedContent
from usecase.interface import StorageChange
from usecase.write_history import WriteHistory


class AppendHistory(WriteHistory):
    """Append a block to a chat's `history.md`: whole or not at all, never interleaved.

    The block is staged before any lock is taken, then copied to the end of the file
    under the workspace lock; the committed length in metadata hides any torn tail.
    The staged copy is not fsynced: its bytes are fsynced once, in `history.md`, before
    the metadata commit that makes them part of the history.
    """

    _stage_durably = False
    _replaces_whole_file = False
    # most appends are a message or two: read whole (in memory) before any lookup
    _read_first_bytes = 16 * 1024

    def _freed_bytes(self, chat: Chat) -> int:  # noqa: ARG002
        return 0

    def _new_size(self, chat: Chat, staged: StagedContent) -> int:
        return chat.history_bytes + staged.size_bytes

    async def _change(self, chat: Chat, staged: StagedContent) -> StorageChange:
        return await self._storage.append_history(chat, staged)
