"""Users' secrets encrypted at rest: AES-256-GCM (the `cryptography` package) under a key from SECRETS_KEY.

The AES key is derived from SECRETS_KEY with HKDF-SHA256, so any string of at least 32 characters
serves (a generated one in the embedded mode). Each value is sealed with a fresh 96-bit nonce and the
owner and name as associated data: a ciphertext copied into another owner's row, or renamed, does not
decrypt. A stored value is `version byte | nonce | ciphertext and tag`; the version byte leaves room for
a key rotation to tell old values from new ones.
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_KEY_CHARS = 32
FORMAT_VERSION = 1
NONCE_BYTES = 12
_HKDF_INFO = b"workflow-service user secrets v1"


class SecretKeyError(ValueError):
    """SECRETS_KEY is missing or too short."""


class SecretDecryptionError(Exception):
    """A stored value does not decrypt under this key: another SECRETS_KEY wrote it, or it was altered."""


class SecretCipher:
    def __init__(self, key: str) -> None:
        if len(key) < MIN_KEY_CHARS:
            raise SecretKeyError(f"SECRETS_KEY must be at least {MIN_KEY_CHARS} characters long")
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(key.encode())
        self._aead = AESGCM(derived)

    def seal(self, owner: str, name: str, value: str) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), _associated_data(owner, name))
        return bytes([FORMAT_VERSION]) + nonce + sealed

    def open(self, owner: str, name: str, stored: bytes) -> str:
        if len(stored) <= 1 + NONCE_BYTES or stored[0] != FORMAT_VERSION:
            raise SecretDecryptionError(f"secret {name!r} of {owner!r} is not in a format this service reads")
        nonce, sealed = stored[1 : 1 + NONCE_BYTES], stored[1 + NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, _associated_data(owner, name)).decode()
        except InvalidTag:
            raise SecretDecryptionError(
                f"secret {name!r} of {owner!r} does not decrypt: it was stored under another SECRETS_KEY "
                "or altered"
            ) from None


def _associated_data(owner: str, name: str) -> bytes:
    return json.dumps([owner, name]).encode()
