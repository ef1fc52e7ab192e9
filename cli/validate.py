"""`workflow-service validate FILE`: every problem of a workflow file, without running anything."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from cli.inputs import EXIT_COMPLETED, EXIT_INVALID, load_workflow_file
from config.settings import Settings
from engine.errors import InvalidWorkflowError
from engine.models import WorkflowDefinition
from engine.validation import validate_workflow
from nodes.registry import default_registry


def checked_definition(path: Path, settings: Settings) -> WorkflowDefinition:
    """The file's definition, validated against the node types this service knows (its plugins too);
    raises CliInputError or InvalidWorkflowError."""
    return validate_workflow(load_workflow_file(path), default_registry(settings.jobs.node_plugin_paths))


def validate_file(path: Path, settings: Settings, out: TextIO) -> int:
    try:
        definition = checked_definition(path, settings)
    except InvalidWorkflowError as exc:
        write_problems(path, exc, out)
        return EXIT_INVALID
    out.write(
        f"{path}: valid workflow '{definition.name}' "
        f"({len(definition.nodes)} nodes, {len(definition.edges)} edges)\n"
    )
    return EXIT_COMPLETED


def write_problems(path: Path, error: InvalidWorkflowError, out: TextIO) -> None:
    out.write(f"{path}: {len(error.problems)} problem(s)\n")
    for problem in error.problems:
        out.write(f"  - {problem}\n")
