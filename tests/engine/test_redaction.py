import base64
import json
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from engine.redaction import MASK, Redactor, encoded_forms

SECRETS = {"api_key": "sk-live-123456", "api_key_long": "sk-live-123456-extra", "password": "hunter2!"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Bearer sk-live-123456", "Bearer ***"),
        ("sk-live-123456sk-live-123456", "******"),
        ("long sk-live-123456-extra wins", "long *** wins"),
        ("pw=hunter2! and key=sk-live-123456", "pw=*** and key=***"),
        ("nothing secret here", "nothing secret here"),
        (
            {"headers": {"Authorization": "Bearer sk-live-123456"}, "n": 3, "ok": True, "none": None},
            {"headers": {"Authorization": "Bearer ***"}, "n": 3, "ok": True, "none": None},
        ),
        (
            {"messages": [{"content": "use hunter2!"}, ["deep", ["deeper hunter2!"]]], "ratio": 0.5},
            {"messages": [{"content": "use ***"}, ["deep", ["deeper ***"]]], "ratio": 0.5},
        ),
        (("hunter2!", 1), ("***", 1)),
        ({"hunter2!": "value"}, {"***": "value"}),
        ({1: "hunter2!"}, {1: "***"}),
    ],
)
def test_every_occurrence_of_every_secret_is_masked(value: Any, expected: Any) -> None:
    assert Redactor(SECRETS).redact(value) == expected


def test_secrets_shorter_than_four_characters_are_not_masked() -> None:
    redactor = Redactor({"short": "abc", "empty": "", "ok": "abcd"})
    assert redactor.redact("abc abcd") == "abc ***"


def test_the_minimum_length_can_be_changed() -> None:
    assert Redactor({"pin": "42"}, min_chars=2).redact("pin 42") == "pin ***"


def test_a_secret_is_masked_inside_serialized_json() -> None:
    secret = 'pa"ss\\word\n'
    text = json.dumps({"password": secret})
    assert secret not in text
    assert Redactor({"p": secret}).redact_text(text) == '{"password": "***"}'


def test_secrets_with_regex_characters_are_matched_literally() -> None:
    redactor = Redactor({"k": "a.b*c+(d)"})
    assert redactor.redact("x a.b*c+(d) y aXbbbc+d") == "x *** y aXbbbc+d"


def test_without_secrets_values_come_back_unchanged_and_fast() -> None:
    value = {"a": ["sk-live-123456"]}
    redactor = Redactor({})
    assert not redactor.active
    assert redactor.redact(value) is value
    assert redactor.redact_text("x") == "x"
    assert Redactor({"short": "ab"}).redact(value) is value


def test_redaction_does_not_change_its_input() -> None:
    value = {"a": ["hunter2!"]}
    assert Redactor(SECRETS).redact(value) == {"a": [MASK]}
    assert value == {"a": ["hunter2!"]}


ENCODED_SECRET = 'pa/ss+wo"rd ü?&='


@pytest.mark.parametrize(
    "leak",
    [
        pytest.param(ENCODED_SECRET, id="as-is"),
        pytest.param(json.dumps({"k": ENCODED_SECRET}), id="json-escaped"),
        pytest.param(json.dumps({"k": ENCODED_SECRET}, ensure_ascii=False), id="json-escaped-unicode"),
        pytest.param("https://x.test/?q=" + quote(ENCODED_SECRET), id="url"),
        pytest.param("q=" + quote_plus(ENCODED_SECRET), id="form"),
        *(
            pytest.param(
                base64.b64encode((prefix + ENCODED_SECRET + suffix).encode()).decode(),
                id=f"base64-{len(prefix)}-{len(suffix)}",
            )
            for prefix in ("", "u:", "user:")
            for suffix in ("", "!", "!!")
        ),
        pytest.param(base64.urlsafe_b64encode(("x" + ENCODED_SECRET).encode()).decode(), id="base64url"),
    ],
)
def test_a_secret_is_masked_in_its_common_encodings(leak: str) -> None:
    redacted = Redactor({"s": ENCODED_SECRET}).redact_text(f"before {leak} after")
    assert MASK in redacted
    assert ENCODED_SECRET not in redacted
    for form in encoded_forms(ENCODED_SECRET):
        assert form not in redacted


def test_basic_auth_of_a_secret_password_is_masked() -> None:
    header = "Basic " + base64.b64encode(b"alice:" + SECRETS["password"].encode()).decode()
    redacted = Redactor(SECRETS).redact_text(header)
    assert redacted != header and MASK in redacted
