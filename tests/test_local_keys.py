"""Keys the embedded mode makes once: kept in DATA_DIR with mode 0600, the same at every start."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from config.local_keys import KEY_BYTES, KeyFileError, persistent_random_key
from config.settings import Settings


def test_a_key_is_made_once_with_mode_0600_and_read_back(tmp_path):
    path = tmp_path / "data" / "jwt-secret"
    first = persistent_random_key(path)
    assert len(first) >= KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert persistent_random_key(path) == first
    assert persistent_random_key(tmp_path / "other") != first


def test_starts_racing_for_the_first_key_all_get_the_same_one(tmp_path):
    path = tmp_path / "secrets-key"
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: persistent_random_key(path), range(32)))
    assert len(keys) == 1
    assert sorted(os.listdir(tmp_path)) == ["secrets-key"]


def test_a_key_file_others_can_read_is_refused(tmp_path):
    path = tmp_path / "jwt-secret"
    persistent_random_key(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        persistent_random_key(path)


@pytest.mark.parametrize(
    ("env", "embedded"),
    [
        ({"HOST": "127.0.0.1"}, True),
        ({"HOST": "localhost"}, True),
        ({"HOST": "::1"}, True),
        ({"HOST": "0.0.0.0"}, False),
        ({"HOST": "127.0.0.1", "MONGODB_URL": "mongodb://db/x"}, False),
        ({"HOST": "127.0.0.1", "REDIS_HOST": "redis"}, False),
    ],
)
def test_the_embedded_development_mode_is_the_local_stores_on_a_loopback_address(env, embedded):
    assert Settings(_env_file=None, **env).embedded_development_mode is embedded
