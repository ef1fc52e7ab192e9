"""Settings come from the platform's environment names and from .env; logs are structured."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.log_setup import configure_logging
from config.settings import LogFormat, Settings

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def test_defaults_are_the_embedded_mode(monkeypatch):
    for name in ("MONGODB_URL", "REDIS_HOST", "RAY_ADDRESS", "PORT", "HOST", "JWT_SECRET", "METRICS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)
    assert (settings.server.host, settings.server.port) == ("127.0.0.1", 8001)
    assert settings.storage.mongodb_url is None and settings.events.redis_host is None
    assert settings.ray.address is None
    assert settings.embedded_development_mode
    assert settings.auth.jwt_secret is None and settings.server.metrics_token is None, "no default secret"
    assert settings.logging.format is LogFormat.JSON


def test_platform_environment_names_are_read(monkeypatch):
    monkeypatch.setenv("PORT", "9000")
    monkeypatch.setenv("MONGODB_URL", "mongodb://db:27017/optimus")
    monkeypatch.setenv("REDIS_HOST", "cache")
    monkeypatch.setenv("REDIS_PASSWORD", "s3cret")
    monkeypatch.setenv("JWT_ALGORITHM", "HS512")
    monkeypatch.setenv("LOG_FORMAT", "text")
    monkeypatch.setenv("DATA_DIR", "/var/lib/wf")
    settings = Settings(_env_file=None)
    assert (settings.server.port, settings.storage.mongodb_url, settings.events.redis_host) == (
        9000,
        "mongodb://db:27017/optimus",
        "cache",
    )
    password = settings.events.redis_password
    assert password is not None and password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings), "secrets never show in reprs or logs"
    assert (settings.auth.jwt_algorithm, settings.logging.format, settings.storage.data_dir) == (
        "HS512",
        LogFormat.TEXT,
        Path("/var/lib/wf"),
    )


def test_dotenv_file_is_read_and_empty_values_mean_unset(tmp_path, monkeypatch):
    for name in ("MONGODB_URL", "PORT", "LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("PORT=8100\nMONGODB_URL=\nLOG_LEVEL=debug\n")
    settings = Settings(_env_file=env_file)
    assert (settings.server.port, settings.storage.mongodb_url, settings.logging.level) == (
        8100,
        None,
        "DEBUG",
    )


def test_env_example_lists_every_setting():
    names = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    aliases = set(Settings.environment_names())
    assert aliases <= names, f"missing from .env.example: {sorted(aliases - names)}"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PORT", "70000", "less than or equal to 65535"),
        ("LOG_LEVEL", "chatty", "LOG_LEVEL must be"),
        ("LOG_FORMAT", "xml", "'json' or 'text'"),
    ],
)
def test_bad_values_are_named(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings(_env_file=None)
    assert name in str(caught.value) and message in str(caught.value)


def test_json_logs_go_to_stdout_and_log_file(tmp_path, capsys):
    log_file = tmp_path / "logs" / "service.log"
    configure_logging("INFO", LogFormat.JSON, log_file)
    try:
        logging.getLogger("wf.test").info("job started", extra={"job_id": "j1"})
        logging.getLogger("wf.test").debug("not shown")
    finally:
        configure_logging("WARNING", LogFormat.TEXT, None)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    entry = json.loads(line)
    assert (entry["message"], entry["level"], entry["job_id"], entry["logger"]) == (
        "job started",
        "info",
        "j1",
        "wf.test",
    )
    assert json.loads(log_file.read_text().strip()) == entry
