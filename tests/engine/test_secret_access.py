"""Who may use an operator secret: the subjects and roles its SECRETS_FILE entry names, and admins."""

from __future__ import annotations

import pytest

from engine.secret_access import (
    OperatorSecret,
    SecretsFileError,
    parse_operator_secrets,
    usable_operator_secrets,
)

FILE = {
    "legacy": "plain-string-value",
    "for_alice": {"value": "alice-only", "subjects": ["alice"]},
    "for_team": {"value": "team-value", "roles": ["team"]},
    "for_both": {"value": "both-value", "subjects": ["carol"], "roles": ["ops"]},
}


@pytest.mark.parametrize(
    ("subject", "roles", "usable"),
    [
        ("alice", [], {"for_alice"}),
        ("bob", [], set()),
        ("bob", ["team"], {"for_team"}),
        ("carol", [], {"for_both"}),
        ("dave", ["ops", "team"], {"for_team", "for_both"}),
        ("root", ["admin"], {"legacy", "for_alice", "for_team", "for_both"}),
    ],
)
def test_an_operator_secret_is_usable_by_its_subjects_its_roles_and_admins(subject, roles, usable):
    secrets = parse_operator_secrets(FILE, "secrets.json")
    assert set(usable_operator_secrets(secrets, subject, roles)) == usable


def test_an_entry_that_names_nobody_is_for_admins_only():
    entry = parse_operator_secrets({"x": "v"}, "f")["x"]
    assert entry == OperatorSecret(value="v")
    assert not entry.usable_by("alice", ["user", "team"])
    assert entry.usable_by("root", ["admin"])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["not", "an", "object"], "must hold a JSON object"),
        ({"bad-name": "v"}, "secret name 'bad-name' is not valid"),
        ({"x": 3}, "secret 'x' must be a string or an object"),
        ({"x": {"value": "v", "subject": ["alice"]}}, "secret 'x' must be a string or an object"),
        ({"x": {"subjects": ["alice"]}}, "value: Field required"),
        ({"x": {"value": ""}}, "value: String should have at least 1 character"),
    ],
)
def test_a_malformed_secrets_file_names_the_entry(data, message):
    with pytest.raises(SecretsFileError, match=r"secrets\.json") as caught:
        parse_operator_secrets(data, "secrets.json")
    assert message in str(caught.value)
