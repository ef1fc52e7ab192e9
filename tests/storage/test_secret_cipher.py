"""Users' secrets at rest: AES-256-GCM under SECRETS_KEY, bound to their owner and name."""

from __future__ import annotations

import pytest

from storage.secret_cipher import SecretCipher, SecretDecryptionError, SecretKeyError

KEY = "k" * 32


def test_a_sealed_value_opens_with_the_same_key_owner_and_name():
    cipher = SecretCipher(KEY)
    sealed = cipher.seal("alice", "api_key", "sk-live-1234")
    assert b"sk-live-1234" not in sealed
    assert cipher.open("alice", "api_key", sealed) == "sk-live-1234"
    assert cipher.seal("alice", "api_key", "sk-live-1234") != sealed


@pytest.mark.parametrize(
    ("owner", "name", "key"),
    [("bob", "api_key", KEY), ("alice", "other", KEY), ("alice", "api_key", "j" * 32)],
    ids=["moved-to-another-owner", "renamed", "another-key"],
)
def test_a_sealed_value_does_not_open_under_another_owner_name_or_key(owner, name, key):
    sealed = SecretCipher(KEY).seal("alice", "api_key", "sk-live-1234")
    with pytest.raises(SecretDecryptionError, match="does not decrypt"):
        SecretCipher(key).open(owner, name, sealed)


def test_an_altered_value_does_not_open():
    cipher = SecretCipher(KEY)
    sealed = bytearray(cipher.seal("alice", "api_key", "sk-live-1234"))
    sealed[-1] ^= 1
    with pytest.raises(SecretDecryptionError):
        cipher.open("alice", "api_key", bytes(sealed))
    with pytest.raises(SecretDecryptionError, match="not in a format"):
        cipher.open("alice", "api_key", b"\x02" + bytes(sealed[1:]))


def test_a_short_key_is_refused():
    with pytest.raises(SecretKeyError, match="at least 32 characters"):
        SecretCipher("short")
