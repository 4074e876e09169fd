"""The list pages written from the domain objects are the models' bytes, generated.

Oracle: `ChatPage`/`ChatFilePage.model_dump_json()` of the same items, which is what the
routes sent before they wrote pages themselves (FastAPI's `response_model` path and
`json_response` serialise the model with the same pydantic-core serializer).
"""

from datetime import UTC, datetime, timedelta, timezone

from hypothesis import example, given, settings
from hypothesis import strategies as st

from api.schemas import (
    ChatFileOut,
    ChatFilePage,
    ChatOut,
    ChatPage,
    chat_page_json,
    file_page_json,
)
from domain.chat import MAX_CHAT_TITLE_CHARS, Chat, ChatAttachmentName, ChatFile
from domain.error import InvalidAttachmentNameError, ReservedAttachmentNameError

SETTINGS = settings(max_examples=300, deadline=None)

# what the stores return (UTC), other offsets, whole seconds (the fraction pydantic-core
# would drop), years before 1000 (which `Timestamp` writes without padding)
TIMES = st.datetimes(
    min_value=datetime(2, 1, 1),  # noqa: DTZ001 - hypothesis takes naive bounds
    max_value=datetime(9998, 12, 31),  # noqa: DTZ001
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(0)), timezone(timedelta(hours=5, minutes=30))]
    ),
) | st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda value: value.replace(microsecond=0))
SIZES = st.integers(min_value=0, max_value=2**63 - 1)
# any text: non-ASCII, quotes, backslashes, control characters, U+2028
TEXT = st.text(max_size=MAX_CHAT_TITLE_CHARS)
CURSORS = st.none() | st.text(alphabet='ABCDEFabcdef0123456789-_', min_size=1, max_size=120)


def _name(value: str) -> ChatAttachmentName | None:
    try:
        return ChatAttachmentName(value)
    except (InvalidAttachmentNameError, ReservedAttachmentNameError):
        return None


NAMES = st.text(min_size=1, max_size=80).map(_name).filter(lambda name: name is not None)

CHATS = st.builds(
    Chat,
    chat_id=st.uuids(),
    workspace_id=st.uuids(),
    created_at=TIMES,
    updated_at=TIMES,
    title=st.none() | TEXT,
    history_bytes=SIZES,
    history_revision=SIZES,
    file_count=SIZES,
)
FILES = st.builds(
    ChatFile,
    file_id=st.uuids(),
    chat_id=st.uuids(),
    name=NAMES,
    content_type=st.none() | TEXT,
    size_bytes=SIZES,
    created_at=TIMES,
    sha256=st.text(alphabet='0123456789abcdef', min_size=64, max_size=64),
)


@SETTINGS
@given(chats=st.lists(CHATS, max_size=8), next_cursor=CURSORS)
@example(chats=[], next_cursor=None)
def test_chat_page_is_the_models_json(chats: list[Chat], next_cursor: str | None) -> None:
    model = ChatPage(items=[ChatOut.of(chat) for chat in chats], next_cursor=next_cursor)

    assert chat_page_json(chats, next_cursor) == model.model_dump_json().encode()


@SETTINGS
@given(files=st.lists(FILES, max_size=8), next_cursor=CURSORS)
@example(files=[], next_cursor=None)
def test_file_page_is_the_models_json(files: list[ChatFile], next_cursor: str | None) -> None:
    model = ChatFilePage(items=[ChatFileOut.of(f) for f in files], next_cursor=next_cursor)

    assert file_page_json(files, next_cursor) == model.model_dump_json().encode()
