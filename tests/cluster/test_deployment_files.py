"""The deployment files, checked without a cloud or a Docker engine: ray-cluster.yaml by Ray's own
cluster-config validation; the Dockerfile, docker-compose.yml and requirements.lock against the project
(what it ships, the settings it reads, the dependencies it declares)."""

from __future__ import annotations

import contextlib
import copy
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from ray.autoscaler._private.util import prepare_config, validate_config

from config.settings import Settings
from nodes.settings import NodeSettings

REPO = Path(__file__).resolve().parents[2]


def load_yaml(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((REPO / name).read_text(encoding="utf-8"))
    return loaded


def ray_validated(raw: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` does to a config before launching anything: fill in the provider's defaults,
    then validate against Ray's schema and rules."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def test_ray_cluster_yaml_passes_rays_validation():
    config = ray_validated(load_yaml("ray-cluster.yaml"))
    assert config["provider"]["type"] == "aws"
    head = config["available_node_types"][config["head_node_type"]]
    workers = {
        name: t for name, t in config["available_node_types"].items() if name != config["head_node_type"]
    }
    assert "job_slot" not in head["resources"], "the head runs no job actor"
    assert workers and all(t["resources"].get("job_slot", 0) > 0 for t in workers.values())
    assert all(t["max_workers"] > t["min_workers"] for t in workers.values()), "workers can scale"
    assert 0 < config["idle_timeout_minutes"] <= 30
    setup = " && ".join(config["setup_commands"])
    assert "requirements.lock" in setup and "pip check" in setup
    head_start = " ".join(config["head_start_ray_commands"])
    assert "ray start --head" in head_start
    assert re.search(r"RAY_ADDRESS=auto .*workflow-service serve", head_start)
    assert config["docker"]["image"].startswith("rayproject/ray:2.60.0-py311"), "the Ray the lock pins"


@pytest.mark.parametrize(
    ("break_it", "error"),
    [
        (lambda c: c.update(idle_timeout_minute=5), jsonschema.ValidationError),
        (lambda c: c.update(head_node_type="nowhere"), ValueError),
        (lambda c: c["available_node_types"]["jobs"].update(min_workers=20), ValueError),
    ],
    ids=["misspelled-key", "unknown-head-type", "min-above-max"],
)
def test_rays_validation_would_catch_a_broken_cluster_config(break_it, error):
    broken = load_yaml("ray-cluster.yaml")
    break_it(broken)
    with pytest.raises(error):
        ray_validated(broken)


def test_the_fake_provider_config_passes_rays_schema_and_has_the_auth_key():
    config = load_yaml("deploy/fake-multinode.yaml")
    assert config["auth"]["ssh_user"], "without it the monitor stops with KeyError: 'auth'"
    config["provider"]["gcs_address"] = "127.0.0.1:6379"
    validate_config(config)  # complete as it is: Ray's defaults for this provider are the missing file
    assert "job_slot" not in config["available_node_types"]["ray.head.default"]["resources"]
    assert config["available_node_types"]["ray.worker.jobs"]["resources"]["job_slot"] > 0


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_runs_the_gateway_as_a_non_root_user_under_tini_with_a_healthcheck():
    instructions = dockerfile_instructions()
    kinds = [kind for kind, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim-bookworm")
    users = [argument for kind, argument in instructions if kind == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert kinds.index("USER") < kinds.index("CMD")
    healthcheck = dict(instructions)["HEALTHCHECK"]
    assert "/health" in healthcheck and "--interval=" in healthcheck
    assert dict(instructions)["ENTRYPOINT"] == '["tini", "--"]'
    assert dict(instructions)["CMD"] == '["python", "-m", "cli", "serve"]'
    installs = " ".join(argument for kind, argument in instructions if kind == "RUN")
    assert {"bubblewrap", "libseccomp2", "tini"} <= set(installs.split())
    assert "pip install --no-deps -r /app/requirements.lock && pip check" in installs


def test_dockerfile_copies_every_package_the_project_ships():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    shipped = {
        pattern.rstrip("*") for pattern in project["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = {argument.split()[0] for kind, argument in dockerfile_instructions() if kind == "COPY"}
    assert shipped <= copied, f"packages missing from the image: {shipped - copied}"
    excluded = [path for path in copied if dockerignored(path)]
    assert not excluded, f"copied paths excluded from the build context: {excluded}"


def dockerignored(path: str) -> bool:
    """Whether .dockerignore keeps `path` out of the build context: the last matching line decides, a
    directory's line covers what is inside it, and `!` takes a path back in."""
    ignored = False
    for line in (REPO / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!")
        if path == pattern or path.startswith(pattern + "/"):
            ignored = not keep
    return ignored


def locked() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_declared_dependency_within_its_range():
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    pins = locked()
    for text in project["dependencies"]:
        requirement = Requirement(text)
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{requirement.name} is declared but not locked: regenerate requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"locked {name}=={pins[name]} breaks {requirement}"


def test_compose_sets_only_settings_the_service_reads_and_waits_for_healthy_stores():
    compose = load_yaml("docker-compose.yml")
    service = compose["services"]["workflow-service"]
    known = set(Settings.environment_names())
    assert set(service["environment"]) <= known, set(service["environment"]) - known
    assert {"MONGODB_URL", "REDIS_HOST"} <= set(service["environment"])
    assert service["depends_on"] == {
        "mongodb": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
    }
    for store in ("mongodb", "redis"):
        assert compose["services"][store]["healthcheck"]["test"][0] == "CMD"


def test_the_compose_overlay_runs_the_full_sandbox_through_the_images_cgroup_script():
    sandbox = load_yaml("deploy/compose.sandbox.yml")["services"]["workflow-service"]
    assert sandbox["user"] == "root" and sandbox["cap_add"] == ["SYS_ADMIN"]
    assert {"seccomp=unconfined", "apparmor=unconfined"} <= set(sandbox["security_opt"])
    copies = [argument.split() for kind, argument in dockerfile_instructions() if kind == "COPY"]
    assert ["deploy/sandbox-cgroups.sh", "/usr/local/bin/sandbox-cgroups"] in copies
    assert sandbox["entrypoint"] == ["tini", "--", "sandbox-cgroups"]
    image_command = dict(dockerfile_instructions())["CMD"]
    assert sandbox["command"] == yaml.safe_load(image_command), "a new entrypoint drops the image's CMD"


def test_the_cgroup_script_is_valid_sh_and_names_a_setting_the_service_reads():
    script = REPO / "deploy" / "sandbox-cgroups.sh"
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert "export SANDBOX_CGROUP_PARENT=/sandbox" in script.read_text()
    assert "SANDBOX_CGROUP_PARENT" in {field.alias for field in NodeSettings.model_fields.values()}
    assert "SANDBOX_CGROUP_PARENT=" in (REPO / ".env.example").read_text()


@pytest.mark.timeout(60)
def test_the_cgroup_script_delegates_read_only_v1_cgroups_as_docker_mounts_them(tmp_path):
    """Run for real, in a mount namespace of its own where the memory and pids hierarchies are read-only
    (as Docker mounts them); then a sandboxed run uses SANDBOX_CGROUP_PARENT=/sandbox."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1)")
    if Path("/sys/fs/cgroup/cgroup.controllers").exists():
        pytest.skip("a cgroup v2 host: the script would move every process of this machine into a leaf")
    if not all(Path(f"/sys/fs/cgroup/{name}/cgroup.procs").exists() for name in ("memory", "pids")):
        pytest.skip("no cgroup v1 memory and pids hierarchies here")
    check = (
        "import asyncio, os\n"
        "from nodes.sandbox import SandboxLimits, run_python, sandbox_status\n"
        "parent = os.environ['SANDBOX_CGROUP_PARENT']\n"
        "status = asyncio.run(sandbox_status(parent))\n"
        "assert status.problem is None, status.problem\n"
        "print(status.cgroup_layout)\n"
        "code = 'def process():\\n    return 6 * 7\\n'\n"
        "print(asyncio.run(run_python(code, {}, SandboxLimits(), cgroup_parent=parent)).output)\n"
    )
    read_only = "mount --make-rprivate / && " + " && ".join(
        f"mount -o remount,bind,ro /sys/fs/cgroup/{name}" for name in ("memory", "pids")
    )
    try:
        finished = subprocess.run(
            ["unshare", "-m", "sh", "-c", f'{read_only} && exec sh "$0" "$@"',
             str(REPO / "deploy" / "sandbox-cgroups.sh"), sys.executable, "-c", check],
            capture_output=True, text=True, timeout=50, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
        )  # fmt: skip
        assert finished.returncode == 0, finished.stderr
        layout, output = finished.stdout.splitlines()
        assert "/sys/fs/cgroup/memory/sandbox" in layout and "/sys/fs/cgroup/pids/sandbox" in layout
        assert output == "42"
    finally:
        for name in ("memory", "pids"):
            with contextlib.suppress(FileNotFoundError):
                Path(f"/sys/fs/cgroup/{name}/sandbox").rmdir()


def test_every_ray_node_gets_the_full_sandbox():
    config = load_yaml("ray-cluster.yaml")
    ray_validated(config)
    options = config["docker"]["run_options"]
    assert {
        "--user=root",
        "--cap-add=SYS_ADMIN",
        "--security-opt=seccomp=unconfined",
        "--security-opt=apparmor=unconfined",
    } <= set(options)
    setup = config["setup_commands"]
    installs = next(command for command in setup if "apt-get install" in command)
    assert {"bubblewrap", "libseccomp2"} <= set(installs.split())
    delegate = setup.index("sh ~/workflow-service/deploy/sandbox-cgroups.sh")
    assert setup.index(installs) < delegate, "bubblewrap is installed before the cgroups are delegated"
    assert not config["head_setup_commands"] and not config["worker_setup_commands"], "every node, alike"


def test_every_deployment_listens_beyond_loopback_and_so_requires_jwt_secret():
    """The service makes its own JWT key only in the embedded development mode on loopback: each shipped
    deployment serves other machines, sets HOST=0.0.0.0 and must be given JWT_SECRET."""
    docker_env = " ".join(argument for kind, argument in dockerfile_instructions() if kind == "ENV")
    assert re.search(r"\bHOST=0\.0\.0\.0\b", docker_env), "the image listens on every interface"
    compose = load_yaml("docker-compose.yml")["services"]["workflow-service"]["environment"]
    assert compose["HOST"] == "0.0.0.0"
    assert compose["JWT_SECRET"].startswith("${JWT_SECRET:?"), "compose refuses to start without it"
    head_start = " ".join(load_yaml("ray-cluster.yaml")["head_start_ray_commands"])
    assert re.search(r"HOST=0\.0\.0\.0 .*workflow-service serve", head_start)
