import pytest

from engine.conditions import check_condition_syntax, condition_references, evaluate_condition
from engine.errors import ConditionError
from engine.templating import Reference, TemplateContext

CTX = TemplateContext(
    input={
        "value": 11,
        "flag": True,
        "ok": False,
        "tags": ["x", "y"],
        "empty": [],
        "a": 2,
        "b": 3,
        "name": "bob",
        "nothing": None,
        "user": {"role": "admin"},
        "items": [{"id": 1}, {"id": 2}],
        "text_number": "5",
    },
    nodes={
        "classify": {"category": "technical", "score": 0.82},
        "a": {"n": 3},
        "my-node": {"count": 0},
    },
    secrets={"token": "s3cr3t-value"},
)


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{{input.value}} > 10", True),
        ("{{input.value}} > 11", False),
        ("{{classify.output.category}} == 'technical'", True),
        ('{{classify.output.category}} == "billing"', False),
        ("{{classify.output.category}} != 'billing'", True),
        ("{{a.output.n}} >= 3 and {{input.flag}}", True),
        ("{{a.output.n}} >= 3 and {{input.ok}}", False),
        ("{{input.ok}} or {{input.flag}}", True),
        ("'x' in {{input.tags}}", True),
        ("'z' in {{input.tags}}", False),
        ("'z' not in {{input.tags}}", True),
        ("'role' in {{input.user}}", True),
        ("'ob' in {{input.name}}", True),
        ("not {{input.ok}}", True),
        ("not {{input.flag}}", False),
        ("({{input.a}} + {{input.b}}) * 2 == 10", True),
        ("{{input.a}} * 2 - 1 == {{input.b}}", True),
        ("{{input.value}} / 2 == 5.5", True),
        ("{{input.value}} // 2 == 5", True),
        ("{{input.value}} % 2 == 1", True),
        ("-{{input.a}} < +{{input.b}}", True),
        ("1 < {{input.a}} < {{input.b}} <= 3", True),
        ("1 < {{input.a}} > {{input.b}}", False),
        ("{{input.items}}[1]['id'] == 2", True),
        ("{{input.tags}}[-1] == 'y'", True),
        ("{{input.user}}['role'] == 'admin'", True),
        ("{{input.nothing}} is None", True),
        ("{{input.name}} is not None", True),
        ("{{input.tags}} == ['x', 'y']", True),
        ("{{input.a}} in (1, 2, 3)", True),
        ("{{ input.name | upper }} == 'BOB'", True),
        ("{{ input.missing | default(0) }} == 0", True),
        ("{{my-node.output.count}} == 0", True),
        ("'{{input.name}}' == 'bob'", True),
        ("\"{{input.value}}\" == '11'", True),
        ("'user-{{input.a}}' == 'user-2'", True),
        ("{{input.text_number}} == 5", False),
        ("{{input.text_number}} == '5'", True),
        ("{{input.value}} > 10\n and {{input.flag}}", True),
        ("{{secrets.token}} == 's3cr3t-value'", True),
    ],
)
def test_conditions_evaluate_to_the_expected_truth(expr: str, expected: bool) -> None:
    assert evaluate_condition(expr, CTX) is expected


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("{{input.tags}}", True),
        ("{{input.empty}}", False),
        ("{{input.name}}", True),
        ("{{input.nothing}}", False),
        ("{{my-node.output.count}}", False),
        ("{{input.ok}} or {{input.tags}}", True),
        ("{{input.a}} - 2", False),
    ],
)
def test_the_result_is_coerced_with_python_truthiness(expr: str, expected: bool) -> None:
    assert evaluate_condition(expr, CTX) is expected


@pytest.mark.parametrize(
    "value",
    [
        "' or True or '",
        '" or True or "',
        "x' or 'x' == 'x",
        "__import__('os').system('touch /tmp/pwned')",
        "}} or True or {{",
        "1 == 1",
    ],
)
def test_a_value_is_data_never_code(value: str) -> None:
    ctx = TemplateContext(input={"v": value})
    assert evaluate_condition("{{input.v}} == 'x'", ctx) is False
    assert evaluate_condition("'{{input.v}}' == 'x'", ctx) is False
    assert evaluate_condition("{{input.v}} == 'x' and False", ctx) is False
    assert evaluate_condition("{{input.v}} == {{input.v}}", ctx) is True


def test_a_value_that_looks_like_a_boolean_keeps_its_type() -> None:
    ctx = TemplateContext(input={"v": "False", "n": "0"})
    assert evaluate_condition("{{input.v}}", ctx) is True
    assert evaluate_condition("{{input.n}}", ctx) is True
    assert evaluate_condition("{{input.v}} == False", ctx) is False


@pytest.mark.parametrize(
    ("expr", "fragments"),
    [
        ("len({{input.tags}}) > 1", ["function calls are not allowed in conditions: len({{input.tags}})"]),
        ("__import__('os')", ["function calls are not allowed in conditions"]),
        (
            "{{input.tags}}.__class__",
            ["attribute lookups are not allowed in conditions: {{input.tags}}.__class__"],
        ),
        (
            "().__class__.__bases__[0].__subclasses__()",
            ["function calls are not allowed in conditions: ().__class__.__bases__[0].__subclasses__()"],
        ),
        ("(lambda: 1)", ["lambdas are not allowed in conditions"]),
        ("[t for t in {{input.tags}}]", ["comprehensions are not allowed in conditions"]),
        ("{{input.a}} if {{input.flag}} else 0", ["conditional expressions (x if c else y) are not allowed"]),
        ("{'a': 1} == {{input.user}}", ["dict literals are not allowed in conditions"]),
        ("{1} == {{input.user}}", ["set literals are not allowed in conditions"]),
        ("{{input.tags}}[0:1]", ["slices are not allowed in conditions: 0:1"]),
        ("f'{1}' == 'x'", ["f-strings are not allowed in conditions"]),
        ("b'x' == 'x'", ["bytes literals are not allowed in conditions"]),
        ("2 ** 100000 > 1", ["** operators are not allowed in conditions: 2 ** 100000"]),
        ("{{input.a}} | 1", ["| operators are not allowed in conditions"]),
        ("~{{input.a}}", ["~ operators are not allowed in conditions"]),
        ("(x := 1)", ["assignment expressions are not allowed in conditions"]),
        ("{{input.flag}} is True", ["'is' comparisons with anything but None (use == to compare values)"]),
        ("{{input.category}} == technical", ["unknown name 'technical'", "text needs quotes ('technical')"]),
        ("_v0 == 1", ["the name '_v0' is reserved"]),
        ("{{input.value}} >", ["syntax error"]),
        ("{{input.value}} > 1 1", ["syntax error"]),
        ("", ["the condition is empty"]),
        ("   ", ["the condition is empty"]),
        ("1 == " + "1" * 5000, ["the condition is longer than 4096 characters"]),
        ("not " * 60 + "True", ["nested too deeply (more than 50 levels)"]),
        ("{{input.value", ["unclosed '{{'"]),
        ("{{ input.value | }} > 1", ["template {{input.value |}}: syntax error"]),
        (
            "{{ input }} > 1 and '{{ foo }}' == 'x'",
            ["template {{foo}}: 'foo' is not something a template can read"],
        ),
        ("'x{{input.a}}\\x' == 'x'", ["bad string literal 'x{{input.a}}\\x'"]),
    ],
)
def test_a_malformed_condition_is_rejected_before_evaluation(expr: str, fragments: list[str]) -> None:
    problems = check_condition_syntax(expr)
    assert problems
    with pytest.raises(ConditionError) as caught:
        evaluate_condition(expr, CTX)
    for fragment in fragments:
        assert fragment in caught.value.message
        assert any(fragment in problem for problem in problems)
    assert caught.value.retryable is False


@pytest.mark.parametrize(
    ("expr", "fragments"),
    [
        ("{{input.name}} > 1", ["cannot evaluate string 'bob' > number 1"]),
        ("{{input.nothing}} >= 3", ["cannot evaluate null None >= number 3"]),
        ("1 in {{input.a}}", ["cannot evaluate number 1 in number 2", "must be a string, list or object"]),
        ("{{input.name}} + 1 == 2", ["cannot compute string 'bob' + number 1"]),
        ("-{{input.name}}", ["cannot apply - to string 'bob'"]),
        ("{{input.a}} / 0 > 1", ["division by zero in {{input.a}} / 0"]),
        ("{{input.a}} % 0 > 1", ["division by zero"]),
        ("'%s' % {{input.name}} == 'x'", ["the % operator works on numbers only"]),
        ("{{input.name}} * 1000000 == 'x'", ["would repeat to more than 100000 items"]),
        ("[0] * 200000 == []", ["would repeat to more than 100000 items"]),
        ("{{input.tags}}[5] == 'x'", ["index 5 out of range for {{input.tags}} (length 2)"]),
        ("{{input.user}}['age'] > 1", ["{{input.user}} has no field 'age'"]),
        ("{{input.value}}[0] == 1", ["cannot index {{input.value}} (number 11) with number 0"]),
        ("{{input.missing}} == 1", ["template {{input.missing}}: input has no field 'missing'"]),
        (
            "{{classify.output.label}} == 'x'",
            ["node 'classify' has no output field 'label' (fields: category, score)"],
        ),
        ("{{ghost.output.x}} == 1", ["unknown node 'ghost'"]),
        ("'{{ghost.output.x}}' == '1'", ["unknown node 'ghost'"]),
        ("{{input.__class__}} == 1", ["input has no field '__class__'"]),
        (
            "{{input.tags.__class__}} == 1",
            ["input.tags is a list, not an object: cannot read field '__class__'"],
        ),
        ("{{ input.__globals__ }} == 1", ["input has no field '__globals__'"]),
        ("{{ input.tags | attr('__class__') }} == 1", ["No filter named 'attr'"]),
    ],
)
def test_a_condition_that_fails_at_evaluation_says_why(expr: str, fragments: list[str]) -> None:
    with pytest.raises(ConditionError) as caught:
        evaluate_condition(expr, CTX)
    assert caught.value.message.startswith("condition ") or caught.value.message.startswith(
        "invalid condition"
    )
    for fragment in fragments:
        assert fragment in caught.value.message


def test_a_condition_must_be_a_string() -> None:
    assert check_condition_syntax(True) == ["a condition must be a string, got boolean"]  # type: ignore[arg-type]
    with pytest.raises(ConditionError, match="must be a string"):
        evaluate_condition(1, CTX)  # type: ignore[arg-type]


def test_check_condition_syntax_lists_every_problem_without_a_context() -> None:
    problems = check_condition_syntax("len(x) > 1 and y.z == 2 ** 3 and w")
    assert problems == [
        "function calls are not allowed in conditions: len(x)",
        "attribute lookups are not allowed in conditions: y.z",
        "** operators are not allowed in conditions: 2 ** 3",
        "unknown name 'w': values come from templates like {{input.w}}, and text needs quotes ('w')",
    ]
    assert check_condition_syntax("{{input.value}} > 10 and '{{input.name}}' == 'bob'") == []


def test_condition_references_lists_the_values_a_condition_reads() -> None:
    refs = condition_references("{{a.output.n}} > 1 and '{{my-node.output.v}}' == '1' or {{input.x}}")
    assert refs == [
        Reference("a", ("output", "n"), "a.output.n"),
        Reference("my-node", ("output", "v"), "my-node.output.v"),
        Reference("input", ("x",), "input.x"),
    ]
    assert [ref.node_id for ref in refs] == ["a", "my-node", None]
