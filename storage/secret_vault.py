"""The secrets a job may resolve: its owner's own (sealed in the store), then the operator's that it may use.

Users manage their own secrets through the API; the operator's live in SECRETS_FILE, each saying who may
use it (engine/secret_access.py). The file is read at each resolution, so an operator may change it
without a restart. Nothing here ever hands out a secret the owner may not use: a name that is neither
theirs nor granted to them does not exist for them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from engine.errors import StorageUnavailableError
from engine.records import SecretInfo
from engine.secret_access import OperatorSecret, parse_operator_secrets, usable_operator_secrets
from storage.protocols import SecretStore
from storage.secret_cipher import SecretCipher, SecretDecryptionError

logger = logging.getLogger(__name__)

OPERATOR_SOURCE = "operator"


def load_operator_secrets(path: Path | None) -> dict[str, OperatorSecret]:
    """SECRETS_FILE's entries; none when the setting or the file is absent."""
    if path is None or not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    return parse_operator_secrets(data, str(path))


class SecretVault:
    def __init__(self, store: SecretStore, cipher: SecretCipher | None, operator_file: Path | None) -> None:
        self._store = store
        self._cipher = cipher
        self._operator_file = operator_file

    def _sealing(self) -> SecretCipher:
        if self._cipher is None:
            raise StorageUnavailableError("user secrets need SECRETS_KEY, which this process was not given")
        return self._cipher

    async def put(self, owner: str, name: str, value: str) -> tuple[SecretInfo, bool]:
        """Store (or replace) one of the owner's secrets; True when it is new."""
        return await self._store.put_secret(owner, name, self._sealing().seal(owner, name, value))

    async def delete(self, owner: str, name: str) -> None:
        await self._store.delete_secret(owner, name)

    async def names(self, owner: str, roles: Iterable[str]) -> list[SecretInfo]:
        """What the owner's jobs can read, by name: their own secrets, then the operator's granted to them
        that theirs do not shadow."""
        own = await self._store.list_secrets(owner)
        taken = {info.name for info in own}
        granted = usable_operator_secrets(load_operator_secrets(self._operator_file), owner, roles)
        shared = [
            SecretInfo(name=name, source=OPERATOR_SOURCE) for name in sorted(granted) if name not in taken
        ]
        return [*own, *shared]

    async def resolve(self, owner: str, roles: Iterable[str]) -> dict[str, str]:
        """Name -> value for a job of `owner`: the operator's secrets it may use, overridden by its own."""
        values = usable_operator_secrets(load_operator_secrets(self._operator_file), owner, roles)
        if self._cipher is None:
            return values
        for name, sealed in (await self._store.sealed_secrets(owner)).items():
            try:
                values[name] = self._cipher.open(owner, name, sealed)
            except SecretDecryptionError as exc:
                logger.error("left out an unreadable secret: %s", exc, extra={"owner": owner, "secret": name})
        return values
