"""The switch node: which case routes where, what validation reports by field, and a real job run
(SQLite store, embedded Redis, no Ray) in which the targets not chosen are skipped."""

from __future__ import annotations

from typing import Any

import pytest

from actors.job_loop.job_runner import RunnerServices
from engine.errors import ConditionError, InvalidWorkflowError, NodeExecutionError, TemplateError
from engine.records import JobRecord, JobStatus, NodeStatus
from engine.templating import TemplateContext
from engine.validation import validate_workflow
from nodes.base import NodeResult
from nodes.registry import BUILTIN_NODE_TYPES, default_registry
from nodes.switch import MAX_CASES, SwitchNode, same_json
from tests.support.node_services import standalone_context
from tests.support.runner_jobs import start_job

BY_CATEGORY = {
    "value": "{{input.category}}",
    "cases": [
        {"equals": "billing", "target": "billing"},
        {"equals": "refund", "target": "refund"},
        {"equals": "{{input.vip_category}}", "target": "vip"},
    ],
    "default": "other",
}
BY_AMOUNT = {
    "cases": [
        {"condition": "{{input.amount}} > 1000", "target": "manager"},
        {"condition": "{{input.amount}} > 100", "target": "review"},
    ],
    "default": "approve",
}
MIXED = {
    "value": "{{input.code}}",
    "cases": [
        {"equals": 1, "target": "one"},
        {"condition": "{{input.code}} in [2, 3]", "target": "few"},
        {"equals": [4, {"a": None}], "target": "shape"},
        {"equals": None, "target": "nothing"},
    ],
}
SHARED_TARGET = {
    "value": "{{input.letter}}",
    "cases": [{"equals": "a", "target": "vowel"}, {"equals": "e", "target": "vowel"}],
    "default": "consonant",
}


async def run_switch(config: dict[str, Any], job_input: dict[str, Any]) -> NodeResult:
    node = SwitchNode()
    scope = TemplateContext(input=job_input)
    ctx = standalone_context(scope, "route")
    return await node.execute(node.render_config(config, scope, "route"), ctx)


def row(
    config: dict[str, Any],
    job_input: dict[str, Any],
    value: Any,
    branch: str,
    case: int | str,
    inactive: str,
    name: str,
) -> Any:
    """One routing case; `inactive` lists the targets it must deactivate, separated by spaces."""
    return pytest.param(config, job_input, value, branch, case, set(inactive.split()), id=name)


VIP = {"vip_category": "gold"}


@pytest.mark.parametrize(
    ("config", "job_input", "value", "branch", "case", "inactive"),
    [
        row(
            BY_CATEGORY, {"category": "billing", **VIP}, "billing", "billing", 0, "refund vip other", "first"
        ),
        row(BY_CATEGORY, {"category": "refund", **VIP}, "refund", "refund", 1, "billing vip other", "second"),
        row(BY_CATEGORY, {"category": "gold", **VIP}, "gold", "vip", 2, "billing refund other", "templated"),
        row(
            BY_CATEGORY,
            {"category": "spam", **VIP},
            "spam",
            "other",
            "default",
            "billing refund vip",
            "default",
        ),
        row(BY_AMOUNT, {"amount": 5000}, None, "manager", 0, "review approve", "first-match-wins"),
        row(BY_AMOUNT, {"amount": 500}, None, "review", 1, "manager approve", "condition"),
        row(BY_AMOUNT, {"amount": 100}, None, "approve", "default", "manager review", "no-condition"),
        row(MIXED, {"code": 1.0}, 1.0, "one", 0, "few shape nothing", "1.0-equals-1"),
        row(MIXED, {"code": 3}, 3, "few", 1, "one shape nothing", "mixed-condition"),
        row(MIXED, {"code": [4, {"a": None}]}, [4, {"a": None}], "shape", 2, "one few nothing", "structure"),
        row(MIXED, {"code": None}, None, "nothing", 3, "one few shape", "null"),
        row(SHARED_TARGET, {"letter": "e"}, "e", "vowel", 1, "consonant", "shared-target-stays"),
        row(SHARED_TARGET, {"letter": "x"}, "x", "consonant", "default", "vowel", "shared-target-off"),
    ],
)
async def test_the_first_matching_case_routes_and_every_other_target_is_inactive(
    config, job_input, value, branch, case, inactive
):
    result = await run_switch(config, job_input)
    assert result.output == {"branch": branch, "case": case, "value": value}
    assert result.inactive_targets == frozenset(inactive)


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        (1, 1.0, True),
        (1, True, False),
        (0, False, False),
        ("1", 1, False),
        (None, None, True),
        (None, 0, False),
        ([1, [True]], [1.0, [True]], True),
        ([1, [True]], [1, [1]], False),
        ({"a": 1, "b": [2]}, {"b": [2], "a": 1}, True),
        ({"a": 1}, {"a": 1, "b": None}, False),
        ([1, 2], {"0": 1, "1": 2}, False),
    ],
)
def test_equals_compares_json_values_not_python_ones(left, right, equal):
    assert same_json(left, right) is equal
    assert same_json(right, left) is equal


async def test_true_does_not_match_a_case_for_1():
    with pytest.raises(NodeExecutionError):
        await run_switch(MIXED, {"code": True})


async def test_no_match_without_default_fails_loudly_and_is_not_retried():
    config = {"value": "{{input.category}}", "cases": [{"equals": "billing", "target": "billing"}]}
    with pytest.raises(NodeExecutionError) as caught:
        await run_switch(config, {"category": "refund"})
    assert caught.value.retryable is False
    assert caught.value.message == (
        "switch node 'route': none of its 1 case matched for the value string \"refund\" and it has no "
        "default; add a case for it or set `default`"
    )


async def test_no_match_of_conditions_only_names_no_value():
    config = {"cases": BY_AMOUNT["cases"]}
    with pytest.raises(NodeExecutionError, match=r"none of its 2 cases matched and it has no default"):
        await run_switch(config, {"amount": 1})


async def test_a_condition_that_cannot_be_evaluated_names_its_case():
    config = {
        "cases": [
            {"condition": "{{input.n}} > 1", "target": "a"},
            {"condition": "{{input.text}} > 1", "target": "b"},
        ]
    }
    with pytest.raises(ConditionError, match=r"^config\.cases\[1\]\.condition: condition .*cannot evaluate"):
        await run_switch(config, {"n": 0, "text": "lots"})


async def test_an_equals_template_that_does_not_resolve_fails_clearly():
    with pytest.raises(TemplateError, match=r"switch node 'route', config\.cases: .*vip_category"):
        await run_switch(BY_CATEGORY, {"category": "billing"})


async def test_a_value_is_a_variable_of_a_condition_never_code():
    config = {"cases": [{"condition": "{{input.category}} == 'technical'", "target": "t"}], "default": "g"}
    result = await run_switch(config, {"category": "' or True or '"})
    assert result.output["branch"] == "g"


def test_a_rendered_config_dumped_for_another_process_parses_back_the_same():
    node = SwitchNode()
    rendered = node.render_config(MIXED, TemplateContext(input={"code": 2}), "route")
    assert node.parse_config(rendered.model_dump(mode="json"), "route") == rendered
    assert [case.compares_value for case in rendered.cases] == [True, False, True, True]


def workflow_with(config: dict[str, Any], targets: tuple[str, ...] = ("a", "b", "c")) -> dict[str, Any]:
    return {
        "name": "w",
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "route", "type": "switch", "config": config},
            *({"id": target, "type": "transform", "config": {"template": target}} for target in targets),
        ],
        "edges": [
            {"source": "start", "target": "route"},
            *({"source": "route", "target": target} for target in targets),
        ],
    }


def case(target: str = "a", **test: Any) -> dict[str, Any]:
    return {**(test or {"equals": "x"}), "target": target}


VALUE = "{{input.kind}}"
PROBLEMS = [
    pytest.param(
        {"value": VALUE, "cases": [case("a"), case("ghost")], "default": "gone"},
        [
            ("config.cases[1].target", "cases[1].target 'ghost' is not a direct successor of 'route'"),
            ("config.default", "default 'gone' is not a direct successor of 'route'"),
        ],
        id="targets-must-be-successors",
    ),
    pytest.param(
        {"cases": [case(condition="{{input.n}} > 1"), case(condition="len({{input.s}}) > 1")]},
        [("config.cases[1].condition", "function calls are not allowed in conditions")],
        id="condition-syntax",
    ),
    pytest.param(
        {"value": VALUE, "cases": [case(equals="x", condition="{{input.n}} > 1")]},
        [("config.cases[0]", "this one has both")],
        id="both-tests",
    ),
    pytest.param(
        {"value": VALUE, "cases": [{"target": "a"}]},
        [("config.cases[0]", "a case needs exactly one of `equals`")],
        id="no-test",
    ),
    pytest.param(
        {"cases": [case(condition="{{input.n}} > 1"), case(equals="x"), case(equals="y")]},
        [("config", "cases[1], cases[2] compare with `equals`, which needs `value`")],
        id="equals-without-value",
    ),
    pytest.param({"value": VALUE, "cases": []}, [("config.cases", "at least 1 item")], id="no-cases"),
    pytest.param(
        {"value": VALUE, "cases": [case("a", equals=n) for n in range(MAX_CASES + 1)]},
        [("config.cases", f"at most {MAX_CASES} items")],
        id="too-many-cases",
    ),
    pytest.param(
        {"value": VALUE, "cases": [{"equals": "x", "when": "now", "target": "a"}, {"equals": "y"}]},
        [
            ("config.cases[0].when", "Extra inputs are not permitted"),
            ("config.cases[1].target", "Field required"),
        ],
        id="case-fields",
    ),
    pytest.param(
        {"value": VALUE, "cases": "{{input.cases}}"},
        [("config.cases", "cases are not rendered: write them out as a list")],
        id="cases-template",
    ),
    pytest.param(
        {"value": VALUE, "cases": [case("a"), "{{input.case}}"]},
        [("config.cases[1]", "cases are not rendered")],
        id="case-template",
    ),
    pytest.param(
        {"value": VALUE, "cases": [case("a", equals="{{b.output}}")]},
        [("config", "refers to node 'b', which does not run before 'route'")],
        id="equals-template-is-read",
    ),
]


@pytest.mark.parametrize(("config", "expected"), PROBLEMS)
def test_validation_reports_each_problem_by_field(config, expected):
    with pytest.raises(InvalidWorkflowError) as caught:
        validate_workflow(workflow_with(config), default_registry())
    found = [(problem.node_id, problem.field, problem.message) for problem in caught.value.problems]
    assert len(found) == len(expected), found
    for (node_id, field, message), (want_field, want_text) in zip(found, expected, strict=True):
        assert (node_id, field) == ("route", want_field)
        assert want_text in message


def test_a_valid_switch_passes_validation():
    config = {
        "value": VALUE,
        "cases": [case("a", equals="{{input.first}}"), case("b", condition="{{input.n}} > 1"), case("a")],
        "default": "c",
    }
    definition = validate_workflow(workflow_with(config), default_registry())
    assert definition.nodes[1].config == config


def test_the_switch_is_a_builtin_type_with_its_schema():
    schema = default_registry().get("switch").get_schema()
    assert schema["execution"] == "inline"
    assert schema["config_schema"]["required"] == ["cases"]
    assert SwitchNode in BUILTIN_NODE_TYPES


# The job runner's own fixtures: real SQLite store, real embedded Redis.


SUPPORT = {
    "name": "support",
    "nodes": [
        {"id": "start", "type": "start"},
        {
            "id": "route",
            "type": "switch",
            "config": {
                "value": "{{input.category}}",
                "cases": [
                    {"equals": "billing", "target": "billing"},
                    {"condition": "{{input.amount}} > 100", "target": "refund"},
                ],
            },
        },
        {"id": "billing", "type": "transform", "config": {"template": "invoice"}},
        {"id": "billing_mail", "type": "transform", "config": {"template": "mail {{billing.output}}"}},
        {"id": "refund", "type": "transform", "config": {"template": "refund {{input.amount}}"}},
        {"id": "end", "type": "end"},
    ],
    "edges": [
        {"source": "start", "target": "route"},
        {"source": "route", "target": "billing"},
        {"source": "billing", "target": "billing_mail"},
        {"source": "route", "target": "refund"},
        {"source": "billing_mail", "target": "end"},
        {"source": "refund", "target": "end"},
    ],
}


async def run_job(services: RunnerServices, raw: dict[str, Any], job_input: dict[str, Any]) -> JobRecord:
    runner = await start_job(services, validate_workflow(raw, services.registry), job_input)
    await runner.run()
    return await services.store.get_job(runner.job.id)


async def test_a_job_runs_the_chosen_target_and_skips_the_others_with_what_follows_them(services):
    job = await run_job(services, SUPPORT, {"category": "complaint", "amount": 250})
    assert job.status is JobStatus.COMPLETED
    statuses = {node_id: checkpoint.status for node_id, checkpoint in job.nodes.items()}
    assert statuses == {
        "start": NodeStatus.COMPLETED,
        "route": NodeStatus.COMPLETED,
        "billing": NodeStatus.SKIPPED,
        "billing_mail": NodeStatus.SKIPPED,
        "refund": NodeStatus.COMPLETED,
        "end": NodeStatus.COMPLETED,
    }
    assert job.nodes["route"].output == {"branch": "refund", "case": 1, "value": "complaint"}
    assert job.result == {"refund": "refund 250"}


async def test_a_job_whose_value_matches_no_case_and_has_no_default_fails(services):
    job = await run_job(services, SUPPORT, {"category": "complaint", "amount": 5})
    assert job.status is JobStatus.FAILED
    error = job.nodes["route"].error
    assert error is not None and error.type == "node_error" and error.retryable is False
    assert (
        "switch node 'route': none of its 2 cases matched for the value string \"complaint\"" in error.message
    )
    assert job.nodes["route"].attempts == 1
    assert all(job.nodes[node_id].status is not NodeStatus.COMPLETED for node_id in ("billing", "refund"))
