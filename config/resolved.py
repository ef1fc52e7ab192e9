"""What the settings resolve to on this machine, worked out once where the service starts, before
anything else does, and then carried with the settings (actors/ray_runtime/runtime_config.py) rather
than worked out again in each process: DATA_DIR and SECRETS_FILE as absolute paths, and the key users'
secrets are sealed with (SECRETS_KEY, or the embedded store's own, config/secrets_key.py).

The JWT key is not here: only the gateway checks tokens, and it resolves that key once when it is built
(config/jwt_secret.py), so no actor ever holds it.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr

from config.secrets_key import secrets_key
from config.settings import Settings


class Resolved(BaseModel):
    model_config = ConfigDict(frozen=True)

    data_dir: Path
    secrets_file: Path | None
    secrets_key: SecretStr

    @classmethod
    def of(cls, settings: Settings) -> Resolved:
        """Raises SecretsKeyError when there is no usable SECRETS_KEY (and the store cannot make one)."""
        data_dir = settings.storage.data_dir.resolve()
        secrets_file = settings.jobs.secrets_file
        return cls(
            data_dir=data_dir,
            secrets_file=secrets_file.resolve() if secrets_file is not None else None,
            secrets_key=SecretStr(secrets_key(settings, data_dir)),
        )
