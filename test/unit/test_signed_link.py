"""The pure signing functions of download links."""

import base64
import hashlib
import hmac
from uuid import UUID

from usecase.signed_link import LINK_SIGNATURE_DOMAIN, link_signature, signature_matches

SECRET = b'secret-of-the-tests'
FILE_ID = UUID('11111111-1111-4111-8111-111111111111')
OTHER_FILE_ID = UUID('22222222-2222-4222-8222-222222222222')
EXPIRES = 1_795_457_530
SHA = hashlib.sha256(b'content').hexdigest()
OTHER_SHA = hashlib.sha256(b'other content').hexdigest()


def test_signature_is_unpadded_base64url_of_a_domain_separated_hmac() -> None:
    message = LINK_SIGNATURE_DOMAIN + f'{FILE_ID}\n{EXPIRES}\n{SHA}'.encode()
    digest = hmac.new(SECRET, message, hashlib.sha256).digest()

    signature = link_signature(SECRET, FILE_ID, EXPIRES, SHA)

    assert signature == base64.urlsafe_b64encode(digest).rstrip(b'=').decode()
    assert len(signature) == 43
    assert LINK_SIGNATURE_DOMAIN == b'chat-storage-link-v1\n'


def test_every_field_and_the_secret_change_the_signature() -> None:
    signature = link_signature(SECRET, FILE_ID, EXPIRES, SHA)

    assert signature != link_signature(SECRET, OTHER_FILE_ID, EXPIRES, SHA)
    assert signature != link_signature(SECRET, FILE_ID, EXPIRES + 1, SHA)
    assert signature != link_signature(SECRET, FILE_ID, EXPIRES, OTHER_SHA)
    assert signature != link_signature(SECRET + b'!', FILE_ID, EXPIRES, SHA)


def test_signature_matches_only_its_own_fields() -> None:
    signature = link_signature(SECRET, FILE_ID, EXPIRES, SHA)

    assert signature_matches(SECRET, FILE_ID, EXPIRES, SHA, signature)
    assert not signature_matches(SECRET, FILE_ID, EXPIRES, OTHER_SHA, signature)
    assert not signature_matches(b'rotated', FILE_ID, EXPIRES, SHA, signature)
    assert not signature_matches(SECRET, FILE_ID, EXPIRES, SHA, signature + '=')
    assert not signature_matches(SECRET, FILE_ID, EXPIRES, SHA, '')


def test_non_ascii_signature_is_a_mismatch_not_an_error() -> None:
    assert not signature_matches(SECRET, FILE_ID, EXPIRES, SHA, 'é' * 43)
    assert not signature_matches(SECRET, FILE_ID, EXPIRES, SHA, '\udcff' * 43)
