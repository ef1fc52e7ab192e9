"""`workflow-service serve` refuses to start without a usable JWT_SECRET (issue 13, hole 7), and
`workflow-service token` signs with the key the service checks, run as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jose import jwt

from cli import main
from config.jwt_secret import KEY_FILE_NAME
from gateway.auth import TokenVerifier
from tests.support.service_process import REPO, SERVICE_SETTINGS_FROM_THE_TEST_ENVIRONMENT, free_port

SECRET = "cli-keys-secret-0123456789abcdef0123456789"
REFUSAL_TIMEOUT_S = 60
"""The refusal comes before Ray or any store starts; a service that starts instead is caught by this."""


def cli(tmp_path: Path, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
    inherited = {k: v for k, v in os.environ.items() if k not in SERVICE_SETTINGS_FROM_THE_TEST_ENVIRONMENT}
    return subprocess.run(
        [sys.executable, "-m", "cli", *argv],
        env={**inherited, "PYTHONPATH": str(REPO), "DATA_DIR": str(tmp_path / "data"), **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=REFUSAL_TIMEOUT_S,
    )


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["serve"], {"HOST": "0.0.0.0"}, "JWT_SECRET is not set"),
        (["serve", "--host", "0.0.0.0"], {}, "HOST=0.0.0.0 is not a loopback address"),
        (["serve"], {"HOST": "127.0.0.1", "REDIS_HOST": "127.0.0.1"}, "REDIS_HOST is set"),
        (["serve"], {"HOST": "127.0.0.1", "JWT_SECRET": "change-me-in-production"}, "at least 32 bytes"),
    ],
    ids=["public-host", "public-host-flag", "external-redis", "short-secret"],
)
def test_serve_refuses_to_start_without_a_usable_jwt_secret(tmp_path, argv, env, message):
    port = free_port()
    refused = cli(tmp_path, *argv, "--port", str(port), **env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert message in refused.stderr and "JWT_SECRET" in refused.stderr, refused.stderr
    assert not (tmp_path / "data" / KEY_FILE_NAME).exists()


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MONGODB_URL": "mongodb://127.0.0.1:1/x"}, "SECRETS_KEY must be set when MONGODB_URL is"),
        ({"SECRETS_KEY": "too-short"}, "SECRETS_KEY is 9 characters long"),
    ],
    ids=["mongodb-without-key", "short-key"],
)
def test_serve_refuses_to_start_without_a_usable_secrets_key(tmp_path, env, message):
    refused = cli(tmp_path, "serve", "--port", str(free_port()), JWT_SECRET=SECRET, **env)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert message in refused.stderr, refused.stderr


def test_token_signs_with_the_key_the_embedded_service_makes(tmp_path):
    minted = cli(tmp_path, "token", "--sub", "alice", "--admin", "--ttl", "2h", HOST="127.0.0.1")
    assert minted.returncode == 0, minted.stderr
    token = minted.stdout.removesuffix("\n")
    assert token and "\n" not in token and minted.stderr == "", "the token alone on stdout"
    key = (tmp_path / "data" / KEY_FILE_NAME).read_text().strip()
    principal = TokenVerifier(key, "HS256").verify(token)
    assert (principal.subject, principal.is_admin) == ("alice", True)
    claims = jwt.get_unverified_claims(token)
    assert claims["exp"] - claims["iat"] == 7200 and abs(claims["iat"] - time.time()) < 60


def token_command(capsys, monkeypatch, tmp_path: Path, *argv: str, **env: str) -> tuple[int, str, str]:
    """`main(["token", ...])` in this process, with only `env` among the service's settings."""
    for name in SERVICE_SETTINGS_FROM_THE_TEST_ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        code = main(["token", *argv])
    except SystemExit as exit_:  # argparse refusing an argument
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_token_signs_with_jwt_secret_when_it_is_set(capsys, monkeypatch, tmp_path):
    code, out, _ = token_command(
        capsys, monkeypatch, tmp_path, "--sub", "carol", HOST="0.0.0.0", JWT_SECRET=SECRET
    )
    assert code == 0
    principal = TokenVerifier(SECRET, "HS256").verify(out.strip())
    assert (principal.subject, principal.roles) == ("carol", frozenset())
    assert not (tmp_path / "data" / KEY_FILE_NAME).exists()


def test_the_embedded_mode_signs_every_token_with_its_one_key(capsys, monkeypatch, tmp_path):
    tokens = [token_command(capsys, monkeypatch, tmp_path, "--sub", sub)[1].strip() for sub in ("a", "b")]
    key = (tmp_path / "data" / KEY_FILE_NAME).read_text().strip()
    assert [TokenVerifier(key, "HS256").verify(token).subject for token in tokens] == ["a", "b"]


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--sub", "alice"], {"HOST": "0.0.0.0"}, "JWT_SECRET is not set"),
        (["--sub", "alice"], {"JWT_SECRET": "short"}, "JWT_SECRET is 5 bytes long"),
        (["--sub", "alice"], {"JWT_SECRET": SECRET, "JWT_ALGORITHM": "RS256"}, "JWT_ALGORITHM=RS256"),
        (["--sub", " "], {"JWT_SECRET": SECRET}, "--sub must name a user"),
        (["--sub", "alice", "--ttl", "0"], {"JWT_SECRET": SECRET}, "is not a duration"),
        (["--sub", "alice", "--ttl", "soon"], {"JWT_SECRET": SECRET}, "is not a duration"),
    ],
    ids=["no-secret", "short-secret", "asymmetric", "empty-sub", "zero-ttl", "bad-ttl"],
)
def test_token_refuses_clearly(capsys, monkeypatch, tmp_path, argv, env, message):
    code, out, err = token_command(capsys, monkeypatch, tmp_path, *argv, **env)
    assert code == 2 and out == ""
    assert message in err, err
