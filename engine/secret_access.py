"""Who may use which secret: the rule a job's `{{secrets.NAME}}` is resolved by.

A job reads its owner's own secrets first, then the operator's secrets (SECRETS_FILE) that name its owner
as a subject or one of the owner's roles. An operator entry that names nobody is for admins only, so a
secret file written before per-owner secrets existed shares nothing by accident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ADMIN_ROLE = "admin"
SECRET_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
SECRET_NAME_RULE = "a letter or '_', then up to 63 letters, digits or '_' (it is read as {{secrets.NAME}})"
MAX_SECRET_VALUE_CHARS = 64 * 1024


class OperatorSecret(BaseModel):
    """One entry of SECRETS_FILE: its value and who may use it (subjects, roles; neither: admins)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    value: str = Field(min_length=1, max_length=MAX_SECRET_VALUE_CHARS)
    subjects: frozenset[str] = frozenset()
    roles: frozenset[str] = frozenset()

    def usable_by(self, subject: str, roles: Iterable[str]) -> bool:
        held = frozenset(roles)
        if ADMIN_ROLE in held:
            return True
        return subject in self.subjects or bool(self.roles & held)


class SecretsFileError(ValueError):
    """SECRETS_FILE does not hold what it should; the message names the entry."""


def parse_operator_secrets(data: Any, source: str) -> dict[str, OperatorSecret]:
    """SECRETS_FILE's JSON: names to `{"value", "subjects"?, "roles"?}`, or to a bare string (admins only)."""
    if not isinstance(data, Mapping):
        raise SecretsFileError(f"{source} must hold a JSON object of secret names to entries")
    secrets: dict[str, OperatorSecret] = {}
    for name, entry in data.items():
        if not SECRET_NAME_RE.match(name):
            raise SecretsFileError(f"{source}: secret name {name!r} is not valid: {SECRET_NAME_RULE}")
        try:
            secrets[name] = OperatorSecret(value=entry) if isinstance(entry, str) else OperatorSecret(**entry)
        except (TypeError, ValidationError) as exc:
            raise SecretsFileError(
                f"{source}: secret {name!r} must be a string or an object "
                f'{{"value": "...", "subjects": [...], "roles": [...]}}: {_first_error(exc)}'
            ) from None
    return secrets


def usable_operator_secrets(
    secrets: Mapping[str, OperatorSecret], subject: str, roles: Iterable[str]
) -> dict[str, str]:
    held = frozenset(roles)
    return {name: entry.value for name, entry in secrets.items() if entry.usable_by(subject, held)}


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False)[0]
        where = ".".join(str(part) for part in error["loc"])
        return f"{where}: {error['msg']}" if where else error["msg"]
    return str(exc)
