"""No default JWT secret (issue 13, hole 7): the service refuses to start without a JWT_SECRET of 32 bytes
or more, except in the embedded development mode, which makes its own key once and keeps it in DATA_DIR."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from jose import jwt

from config.jwt_secret import MIN_SECRET_BYTES, JwtSecretError, jwt_key_file, jwt_secret
from config.settings import Settings
from gateway.auth import AuthenticationError
from gateway.main import create_app
from tests.gateway.support import make_token

OLD_PUBLIC_DEFAULT = "change-me-in-production"


def settings(tmp_path: Path, **env: str) -> Settings:
    return Settings(_env_file=None, DATA_DIR=tmp_path / "data", **env)


@pytest.mark.parametrize(
    ("env", "reason"),
    [
        ({"HOST": "0.0.0.0"}, "HOST=0.0.0.0 is not a loopback address"),
        ({"HOST": "127.0.0.1", "MONGODB_URL": "mongodb://db/x"}, "MONGODB_URL is set"),
        ({"HOST": "127.0.0.1", "REDIS_HOST": "redis"}, "REDIS_HOST is set"),
    ],
    ids=["public-host", "mongodb", "redis"],
)
def test_without_jwt_secret_a_service_that_is_not_the_embedded_one_refuses_to_start(tmp_path, env, reason):
    configured = settings(tmp_path, **env)
    with pytest.raises(JwtSecretError, match="JWT_SECRET is not set") as refused:
        create_app(configured, configure_logs=False)
    assert reason in str(refused.value)
    assert not jwt_key_file(configured).exists(), "no key is made outside the embedded development mode"


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1"])
def test_a_jwt_secret_shorter_than_32_bytes_is_refused_even_on_loopback(tmp_path, host):
    short = "x" * (MIN_SECRET_BYTES - 1)
    with pytest.raises(JwtSecretError, match=f"JWT_SECRET is {MIN_SECRET_BYTES - 1} bytes long"):
        create_app(settings(tmp_path, HOST=host, JWT_SECRET=short), configure_logs=False)
    with pytest.raises(JwtSecretError, match="at least 32 bytes"):
        jwt_secret(settings(tmp_path, HOST=host, JWT_SECRET=OLD_PUBLIC_DEFAULT))
    assert jwt_secret(settings(tmp_path, HOST=host, JWT_SECRET="é" * 16)) == "é" * 16, "bytes, not chars"


def test_the_embedded_mode_makes_one_key_in_data_dir_and_only_it_verifies_tokens(tmp_path):
    embedded = settings(tmp_path, HOST="127.0.0.1", JWT_SECRET="")
    verifier = create_app(embedded, configure_logs=False).state.verifier
    key_file = jwt_key_file(embedded)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= MIN_SECRET_BYTES and key != OLD_PUBLIC_DEFAULT
    assert jwt_secret(embedded) == key, "the same key at every start"
    assert verifier.verify(make_token("alice", key=key)).subject == "alice"
    with pytest.raises(AuthenticationError, match="Signature verification failed"):
        verifier.verify(make_token("root", roles=["admin"], key=OLD_PUBLIC_DEFAULT))


def test_a_configured_jwt_secret_wins_over_the_development_key(tmp_path):
    secret = "s" * MIN_SECRET_BYTES
    configured = settings(tmp_path, HOST="127.0.0.1", JWT_SECRET=secret)
    assert jwt_secret(configured) == secret
    assert not jwt_key_file(configured).exists()
    token = jwt.encode({"sub": "bob", "exp": 2**40}, secret, algorithm="HS256")
    assert create_app(configured, configure_logs=False).state.verifier.verify(token).subject == "bob"


def test_a_development_key_others_can_read_is_refused_by_name(tmp_path):
    embedded = settings(tmp_path, HOST="127.0.0.1")
    jwt_secret(embedded)
    jwt_key_file(embedded).chmod(0o644)
    with pytest.raises(JwtSecretError, match="chmod 600"):
        create_app(embedded, configure_logs=False)
