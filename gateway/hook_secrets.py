"""Webhooks' secrets, sealed at rest with the cipher of users' secrets (storage/secret_cipher.py, under
SECRETS_KEY): a hook's signature is checked against the secret itself, so it is kept, not hashed. The
associated data is the hook's owner and `webhook:<id>`, so a sealed secret copied to another hook, or
another user's row, does not open."""

from __future__ import annotations

from engine.records import WebhookRecord
from storage.secret_cipher import SecretCipher


class HookSecrets:
    def __init__(self, cipher: SecretCipher) -> None:
        self._cipher = cipher

    def seal(self, owner: str, hook_id: str, secret: str) -> bytes:
        return self._cipher.seal(owner, _name(hook_id), secret)

    def open(self, hook: WebhookRecord) -> str:
        """The hook's secret; SecretDecryptionError when another SECRETS_KEY sealed it."""
        return self._cipher.open(hook.owner, _name(hook.id), hook.sealed_secret)


def _name(hook_id: str) -> str:
    return f"webhook:{hook_id}"
