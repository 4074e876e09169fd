"""`ChatAttachmentName` refuses a name with a control character (Unicode category Cc),
whichever way it checks for one."""

import unicodedata

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from domain.chat import ChatAttachmentName, _has_control_character
from domain.error import InvalidAttachmentNameError


def _oracle(value: str) -> bool:
    return any(unicodedata.category(ch) == 'Cc' for ch in value)


@given(st.text(max_size=40))
@example('report.pdf')
@example('tab\there')
@example('del\x7f')
@example('nul\x00')
@example('line\nfeed')
@example('c1\x85')
@example('no-break\u00a0space')
@example('zero\u200bwidth')
@example('\u2028separator')
def test_has_control_character_is_category_cc(value: str) -> None:
    assert _has_control_character(value) == _oracle(value)


@given(st.text(alphabet=st.characters(codec='ascii'), min_size=1, max_size=40))
def test_ascii_names_are_refused_exactly_when_they_hold_cc(value: str) -> None:
    assume(value not in {'.', '..', 'history.md'} and '/' not in value and '\\' not in value)
    if _oracle(value):
        with pytest.raises(InvalidAttachmentNameError):
            ChatAttachmentName(value)
    else:
        assert ChatAttachmentName(value).value == value
