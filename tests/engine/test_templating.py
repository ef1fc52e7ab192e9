from typing import Any

import pytest

from engine.errors import TemplateError
from engine.templating import (
    Reference,
    TemplateContext,
    check_template_syntax,
    references,
    render,
    render_text,
)

CTX = TemplateContext(
    input={
        "n": 5,
        "price": 2.5,
        "name": "bob",
        "flag": True,
        "nothing": None,
        "tags": ["a", "b"],
        "user": {"email": "bob@example.com", "age": 40},
        "items": [{"name": "first"}, {"name": "second"}],
        "odd key": "spaced",
    },
    nodes={
        "classify": {"label": "technical", "score": 0.9},
        "my-node": {"x": 7, "items": [{"name": "a"}, {"name": "b"}]},
        "2nd-step": {"ok": True},
        "empty": None,
        "text-node": "plain output",
    },
    secrets={"api_key": "sk-live-123456"},
)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{input.n}}", 5),
        ("{{ input.n }}", 5),
        ("{{\tinput.price\n}}", 2.5),
        ("{{input.flag}}", True),
        ("{{input.nothing}}", None),
        ("{{input.user}}", {"email": "bob@example.com", "age": 40}),
        ("{{input.tags}}", ["a", "b"]),
        ("{{input}}", CTX.input),
        ("{{input.items[1].name}}", "second"),
        ("{{input.items[-1].name}}", "second"),
        ("{{input['odd key']}}", "spaced"),
        ('{{input["user"]["age"]}}', 40),
        ("{{classify.output.score}}", 0.9),
        ("{{classify.output}}", {"label": "technical", "score": 0.9}),
        ("{{my-node.output.x}}", 7),
        ("{{my-node.output.items[0].name}}", "a"),
        ("{{2nd-step.output.ok}}", True),
        ("{{text-node.output}}", "plain output"),
        ("{{empty.output}}", None),
        ("{{secrets.api_key}}", "sk-live-123456"),
        ("{{ input.name | upper }}", "BOB"),
        ("{{ input.tags | length }}", 2),
        ("{{ input.n + 1 }}", 6),
        ("{{ input.n-1 }}", 4),
        ("{{ my-node.output.x * 2 }}", 14),
        ("{{ input.missing | default('anon') }}", "anon"),
        ("{{ input.missing is defined }}", False),
        ("{{ input.items | map(attribute='name') | join(', ') }}", "first, second"),
        ("{{ input.items | map(attribute='name') }}", ["first", "second"]),
        ("{{ input.user | items }}", [("email", "bob@example.com"), ("age", 40)]),
        ("{{ input.tags | reverse }}", ["b", "a"]),
        ("{{ [input.n, my-node.output.x] }}", [5, 7]),
        ("{{ input.n if input.flag else 0 }}", 5),
        ("{{ input.user | tojson }}", '{"email": "bob@example.com", "age": 40}'),
        ("{{ '{{' }}", "{{"),
        ("{{ input.name ~ '}}' }}", "bob}}"),
    ],
)
def test_a_string_that_is_one_template_keeps_the_value_type(template: str, expected: Any) -> None:
    result = render(template, CTX)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("n={{input.n}}", "n=5"),
        ("  {{input.n}} ", "  5 "),
        ("{{input.n}}{{input.n}}", "55"),
        ("Hello {{input.name}}, you are {{input.user.age}}", "Hello bob, you are 40"),
        ("user: {{input.user}}", 'user: {"email": "bob@example.com", "age": 40}'),
        ("tags={{input.tags}}", 'tags=["a", "b"]'),
        ("names={{ input.items | map(attribute='name') }}", 'names=["first", "second"]'),
        ("nothing={{input.nothing}}", "nothing=null"),
        ("flag={{input.flag}}", "flag=true"),
        ("price={{input.price}}", "price=2.5"),
        ("node {{my-node.output.x}} of {{2nd-step.output.ok}}", "node 7 of true"),
        ("Bearer {{secrets.api_key}}", "Bearer sk-live-123456"),
        ("{{ input.name | title }}!", "Bob!"),
        ("{% if x %}{# kept #}", "{% if x %}{# kept #}"),
    ],
)
def test_a_template_inside_text_renders_to_text(template: str, expected: str) -> None:
    assert render(template, CTX) == expected


def test_render_text_renders_a_single_template_as_text() -> None:
    assert render_text("{{input.n}}", CTX) == "5"
    assert render_text("{{input.user}}", CTX) == '{"email": "bob@example.com", "age": 40}'
    assert render_text("no template", CTX) == "no template"


def test_render_walks_nested_json_and_leaves_keys_and_scalars_alone() -> None:
    config = {
        "url": "https://api.example.com/users/{{input.user.email}}",
        "headers": {"Authorization": "Bearer {{secrets.api_key}}", "{{input.name}}": "key not rendered"},
        "body": {"items": ["{{input.n}}", {"label": "{{classify.output.label}}"}, 3, None, True]},
        "retries": 3,
        "ratio": 0.5,
        "enabled": False,
        "nothing": None,
        "pair": ("{{input.n}}", "x"),
    }
    assert render(config, CTX) == {
        "url": "https://api.example.com/users/bob@example.com",
        "headers": {"Authorization": "Bearer sk-live-123456", "{{input.name}}": "key not rendered"},
        "body": {"items": [5, {"label": "technical"}, 3, None, True]},
        "retries": 3,
        "ratio": 0.5,
        "enabled": False,
        "nothing": None,
        "pair": (5, "x"),
    }


def test_strings_without_templates_pass_through_as_the_same_object() -> None:
    text = "a plain {string} with } braces { and {%"
    assert render(text, CTX) is text
    config = {"a": [text, 1], "b": {"c": text}}
    assert render(config, CTX) == config


def test_rendered_containers_are_copies_of_the_outputs_they_read() -> None:
    rendered = render({"items": "{{my-node.output.items}}"}, CTX)
    rendered["items"][0]["name"] = "changed"
    rendered["items"].append({"name": "new"})
    assert CTX.nodes["my-node"]["items"] == [{"name": "a"}, {"name": "b"}]


@pytest.mark.parametrize(
    ("template", "fragments"),
    [
        (
            "{{classify.output.category}}",
            [
                "template {{classify.output.category}}",
                "node 'classify' has no output field 'category'",
                "(fields: label, score)",
            ],
        ),
        ("{{input.x}}", ["template {{input.x}}", "input has no field 'x'", "fields: n, price"]),
        ("{{input.user.phone}}", ["input.user has no field 'phone' (fields: email, age)"]),
        ("{{my-node.output.items[3]}}", ["index 3 out of range for my-node.output.items (length 2)"]),
        ("{{my-node.output.items[0].id}}", ["my-node.output.items[0] has no field 'id' (fields: name)"]),
        (
            "{{nope.output.x}}",
            ["unknown node 'nope'", "no output yet", "nodes with output: classify, my-node"],
        ),
        (
            "{{input.items.name}}",
            ["input.items is a list, not an object", "use an index like input.items[0]"],
        ),
        ("{{input.name[0]}}", ["input.name is a string, not a list: cannot use index [0]"]),
        ("{{input.user[0]}}", ["input.user is an object, not a list"]),
        ("{{empty.output.x}}", ["empty.output is null, not an object: cannot read field 'x'"]),
        ("{{text-node.output.x}}", ["text-node.output is a string, not an object"]),
        ("{{secrets.other}}", ["no secret named 'other' that this job may use"]),
        ("{{secrets}}", ["secrets are read one by name"]),
        ("{{classify}}", ["'classify' is not something a template can read", "{{classify.output...}}"]),
        ("{{classify.label}}", ["'classify.label' is not something a template can read"]),
        ("{{inptu.x}}", ["'inptu.x' is not something a template can read"]),
        ("{{ foo | upper }}", ["'foo' is not something a template can read"]),
        ("{{ input.x | upper }}", ["template {{input.x | upper}}", "input has no field 'x'"]),
        ("{{ [input.x] }}", ["input has no field 'x'"]),
        ("{{ input.n | frobnicate }}", ["template {{input.n | frobnicate}}", "No filter named 'frobnicate'"]),
        ("{{ input.n | }}", ["template {{input.n |}}", "syntax error"]),
        ("{{ input.n + }}", ["template {{input.n +}}", "syntax error"]),
        ("{{ }}", ["empty template"]),
        ("{{ input.n", ["unclosed '{{'", "'{{ input.n'"]),
        ("text {{ 'unterminated }}", ["unclosed '{{' (or an unterminated string inside it)"]),
        ("{{ range(10) }}", ["function calls are not allowed in templates: range(...)"]),
        ("{{ input.name.upper() }}", ["function calls are not allowed in templates: input.name.upper(...)"]),
        ("{{ (input.name).upper() }}", ["function calls are not allowed in templates"]),
        ("{{ 2 ** 8 }}", ["the ** operator is not allowed in templates"]),
        ("{{ '%s' % input.n }}", ["the % operator works on numbers only"]),
        ("{{ input.n / 0 }}", ["template {{input.n / 0}}", "division by zero"]),
        ("{{ input.name - 1 }}", ["template {{input.name - 1}}", "unsupported operand"]),
    ],
)
def test_a_template_that_cannot_render_says_what_is_wrong(template: str, fragments: list[str]) -> None:
    with pytest.raises(TemplateError) as caught:
        render({"field": template}, CTX)
    for fragment in fragments:
        assert fragment in caught.value.message
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    "template", ["{{secrets.other}}", "{{ secrets.other | upper }}", "x {{secrets.other}}"]
)
def test_an_unknown_secret_names_that_one_and_never_the_others(template: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render({"field": template}, CTX)
    assert "'other'" in caught.value.message
    assert all(name not in caught.value.message for name in CTX.secrets)


def test_an_expression_longer_than_the_limit_is_rejected() -> None:
    with pytest.raises(TemplateError, match="longer than 4096 characters"):
        render("{{ " + " + ".join(["input.n"] * 700) + " }}", CTX)


@pytest.mark.parametrize(
    "template",
    [
        "{{ input.__class__ }}",
        "{{ input.name.__class__ }}",
        "{{ input.__class__.__mro__ }}",
        "{{ (input).__class__ }}",
        "{{ (input.name).__class__.__base__ }}",
        "{{ ''.__class__ }}",
        "{{ input['__class__'] }}",
        "{{ input.items[0]['__globals__'] }}",
        "{{ lipsum.__globals__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self.__init__.__globals__ }}",
        "{{ input.name | attr('__class__') }}",
        "{{ input.items | map(attribute='__class__') | list }}",
        "{{ namespace() }}",
        "{{ dict(a=1) }}",
        "{{ input.tags.append('x') }}",
        "{{ input.user.update({'a': 1}) }}",
        "{{ input.name.format(input) }}",
        "{{ input.user.items() }}",
    ],
)
def test_templates_cannot_reach_python_internals(template: str) -> None:
    with pytest.raises(TemplateError):
        render(template, CTX)
    assert CTX.input["tags"] == ["a", "b"]
    assert "a" not in CTX.input["user"]


def test_dict_keys_that_look_like_methods_read_data_not_methods() -> None:
    ctx = TemplateContext(input={"data": {"items": [1, 2], "keys": "k"}})
    assert render("{{ input.data.items }}", ctx) == [1, 2]
    assert render("{{ (input.data).items | length }}", ctx) == 2
    assert render("{{ input.data | dictsort | first }}", ctx) == ("items", [1, 2])


def test_output_over_the_cap_is_an_error() -> None:
    ctx = TemplateContext(input={"text": "x" * 600})
    assert render("{{input.text}}-{{input.text}}", ctx, max_output_chars=1201) == "x" * 600 + "-" + "x" * 600
    with pytest.raises(TemplateError, match="exceeds the output limit of 1200 characters"):
        render("{{input.text}}-{{input.text}}", ctx, max_output_chars=1200)


def test_the_cap_counts_all_text_one_render_call_produces() -> None:
    ctx = TemplateContext(input={"text": "x" * 400})
    config = {"a": "{{input.text}}", "b": ["{{input.text}}", "{{input.text}}"]}
    assert render(config, ctx, max_output_chars=1200)["a"] == "x" * 400
    with pytest.raises(TemplateError, match="output limit of 1199"):
        render(config, ctx, max_output_chars=1199)


def test_the_default_cap_is_one_million_characters() -> None:
    ctx = TemplateContext(input={"text": "x" * 500_001})
    with pytest.raises(TemplateError, match="output limit of 1000000"):
        render("{{input.text}}{{input.text}}", ctx)


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ 'a' * 2000 }}", "repeating would make 2000 items, over the limit of 1000"),
        ("{{ [1] * 2000 }}", "repeating would make 2000 items"),
        ("{{ [1, 2, 3, 4] | join('x' * 500) }}", "join would produce more than 1000 characters"),
        (
            "{{ input.name | replace('b', 'b' * 10) | replace('b', 'b' * 10) | replace('b', 'b' * 10) }}",
            "replace would produce more than 1000 characters",
        ),
    ],
)
def test_amplifying_operations_are_capped_before_they_allocate(template: str, fragment: str) -> None:
    with pytest.raises(TemplateError) as caught:
        render(template, CTX, max_output_chars=1000)
    assert fragment in caught.value.message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{{input.n}}", [Reference("input", ("n",), "input.n")]),
        (
            "{{my-node.output.items[0].name}}",
            [Reference("my-node", ("output", "items", 0, "name"), "my-node.output.items[0].name")],
        ),
        ("{{secrets.api_key}}", [Reference("secrets", ("api_key",), "secrets.api_key")]),
        ("{{input['odd key']}}", [Reference("input", ("odd key",), "input['odd key']")]),
        (
            "{{ a.output.x | default(b-2.output.y) }}",
            [
                Reference("a", ("output", "x"), "a.output.x"),
                Reference("b-2", ("output", "y"), "b-2.output.y"),
            ],
        ),
        (
            "{{ input.x | default('c.output.y') | round(precision=2) }}",
            [Reference("input", ("x",), "input.x")],
        ),
        (
            "{{ input.n is divisibleby(3) and not input.flag }}",
            [Reference("input", ("n",), "input.n"), Reference("input", ("flag",), "input.flag")],
        ),
        ("{{ 10 + 1.5e3 }}", []),
        ("{{ true or none }}", []),
        (
            {"a": ["{{x.output}}", {"b": "{{x.output}} and {{y.output.z}}"}], "c": 1},
            [Reference("x", ("output",), "x.output"), Reference("y", ("output", "z"), "y.output.z")],
        ),
        ({"plain": "no templates", "n": 3}, []),
    ],
)
def test_references_lists_what_templates_read(value: Any, expected: list[Reference]) -> None:
    assert references(value) == expected


def test_references_name_the_node_they_read() -> None:
    found = references({"a": "{{input.x}} {{secrets.k}} {{my-node.output}}"})
    assert [ref.node_id for ref in found] == [None, None, "my-node"]


def test_references_raise_on_a_malformed_template() -> None:
    with pytest.raises(TemplateError, match="syntax error"):
        references({"a": "{{ input.x | }}"})


def test_check_template_syntax_reports_every_problem_with_its_location() -> None:
    problems = check_template_syntax(
        {"url": "{{ input.x | }}", "msgs": [{"content": "{{ foo }}"}, "fine {{input.y}}"], "n": "{{input.a"}
    )
    assert len(problems) == 3
    assert problems[0].startswith("url: template {{input.x |}}: syntax error")
    assert problems[1].startswith("msgs[0].content: template {{foo}}: 'foo' is not something")
    assert problems[2].startswith("n: unclosed '{{'")
    assert check_template_syntax({"ok": "{{ input.x | upper }}", "n": 1}) == []
