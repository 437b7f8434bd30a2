"""The recipes in ``deploy/``: static checks of every file, and the local cluster script run.

Docker, kubectl and SLURM are not needed: the compose files and Kubernetes manifests are
parsed (every document), every ``streammix`` and ``dask`` command line in them, in the shell
scripts and in the documented commands is parsed by the real click commands (with their
callbacks replaced, so nothing runs), and ``deploy/local-cluster.sh`` really starts and stops
a cluster on 127.0.0.1. The compose file and the manifests keep data, models and outputs in
an object store: no container that runs streammix or dask mounts a data volume, and every one
that touches data gets the store's keys from the environment or a Secret, never literally.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import psutil
import pytest
import yaml
from click.testing import CliRunner

import streammix.cli  # noqa: F401 - registers the commands on the group
from streammix.cli.app import cli
from streammix.pipeline import load_pipeline

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PIPELINES = ROOT / "pipelines"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
COMPOSE_BASE = DEPLOY / "docker" / "docker-compose.yml"
COMPOSE_OVERRIDES = sorted((DEPLOY / "docker").glob("docker-compose.*.yml"))
K8S_FILES = sorted((DEPLOY / "k8s").glob("*.yaml"))
# The Secret's shape, with placeholders. Not *.yaml: `kubectl apply -f deploy/k8s/` must not
# replace the real Secret with it.
SECRET_TEMPLATE = DEPLOY / "k8s" / "object-store-secret.yaml.example"
README = DEPLOY / "README.md"
LOCAL_CLUSTER = DEPLOY / "local-cluster.sh"
SBATCH = DEPLOY / "slurm" / "streammix-fit.sbatch"
SHELL_SCRIPTS = [LOCAL_CLUSTER, SBATCH]

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
# The one image every recipe runs: `docker build -t streammix:<version> ...`.
IMAGE = f"streammix:{VERSION}"
# Where the Dockerfile puts pipelines/ in the image.
IMAGE_PIPELINES = "/pipelines"

# The namespace assumed in the scheduler addresses the Dask operator puts in the environment
# of the containers it starts (DASK_SCHEDULER_ADDRESS).
OPERATOR_NAMESPACE = "default"


# Where every recipe on Docker or Kubernetes keeps its data, models and outputs.
STORE_SCHEME = "s3://"
# The environment s3fs reads; the first two are secrets.
STORE_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
STORE_ENV = (*STORE_KEYS, "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION")
# Environment variables whose value must never be written into a recipe.
SECRET_VARIABLE = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|ROOT_USER")
# The parameters of streammix commands (and pipeline steps) that name a location.
LOCATION_PARAMS = (
    "data",
    "out",
    "output",
    "model",
    "model_dir",
    "checkpoint",
    "target",
    "versions",
    "truth",
)
# What a Kubernetes pod that runs streammix or dask may mount: nothing that holds data.
ALLOWED_POD_VOLUMES = {"secret", "configMap", "emptyDir", "projected", "downwardAPI"}


def operator_address(cluster: str) -> str:
    return f"tcp://{cluster}-scheduler.{OPERATOR_NAMESPACE}.svc.cluster.local:8786"


# ---------------------------------------------------------------------------------------------
# Reading the recipes


def load_yaml(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def dockerfile_instruction(name: str) -> list[str]:
    """The exec-form (JSON) arguments of the Dockerfile's last ``name`` instruction."""
    found = re.findall(rf"^{name}\s+(\[.*\])\s*$", DOCKERFILE.read_text(), flags=re.M)
    assert found, f"{DOCKERFILE} has no exec-form {name}"
    return list(json.loads(found[-1]))


def strip_init(argv: list[str]) -> list[str]:
    """``tini -g -- prog args`` -> ``prog args``."""
    if argv and Path(argv[0]).name == "tini" and "--" in argv:
        return argv[argv.index("--") + 1 :]
    return argv


@dataclass(frozen=True)
class Invocation:
    """One command line a recipe runs: ``argv[0]`` is ``streammix`` or ``dask``."""

    where: str
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    # "compose", "k8s" or "shell": which scheduler host names are valid for it.
    kind: str = "shell"

    @property
    def program(self) -> str:
        return Path(self.argv[0]).name


def merge_compose(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``docker compose -f base -f override`` for the keys these files use."""
    merged = {**base, "services": {}}
    for name, service in base["services"].items():
        extra = override.get("services", {}).get(name, {})
        out = dict(service)
        for key, value in extra.items():
            if key in ("volumes", "ports") and key in out:
                out[key] = [*out[key], *value]
            elif key == "environment" and key in out:
                out[key] = {**compose_env(out[key]), **compose_env(value)}
            else:
                out[key] = value
        merged["services"][name] = out
    unknown = set(override.get("services", {})) - set(base["services"])
    assert not unknown, f"override defines services missing from the base file: {unknown}"
    return merged


def compose_env(env: Any) -> dict[str, str]:
    if env is None:
        return {}
    if isinstance(env, dict):
        return {str(k): str(v) for k, v in env.items()}
    return dict(str(item).split("=", 1) for item in env)


def compose_variants() -> dict[str, dict[str, Any]]:
    """The compose configurations one can run: the base file, and it plus each override."""
    base = yaml.safe_load(COMPOSE_BASE.read_text())
    variants = {COMPOSE_BASE.name: base}
    for path in COMPOSE_OVERRIDES:
        variants[f"{COMPOSE_BASE.name} + {path.name}"] = merge_compose(
            base, yaml.safe_load(path.read_text())
        )
    return variants


def runs_streammix_image(service: Mapping[str, Any]) -> bool:
    """Whether a compose service runs the streammix image (streammix or dask), not a store."""
    return "build" in service or str(service.get("image", "")).startswith("streammix:")


def compose_program(service: Mapping[str, Any]) -> str:
    """``streammix``, ``dask scheduler`` or ``dask worker``: what a streammix service runs."""
    entrypoint = service.get("entrypoint", dockerfile_instruction("ENTRYPOINT"))
    argv = strip_init([*entrypoint, *service.get("command", [])])
    return "streammix" if argv[0] == "streammix" else " ".join(argv[:2])


def compose_invocations() -> list[Invocation]:
    entrypoint, cmd = dockerfile_instruction("ENTRYPOINT"), dockerfile_instruction("CMD")
    out = []
    for variant, config in compose_variants().items():
        for name, service in config["services"].items():
            if not runs_streammix_image(service):
                continue  # the object store and its one-shot setup: checked on their own
            ep = service.get("entrypoint", entrypoint)
            ep = shlex.split(ep) if isinstance(ep, str) else list(ep)
            # An entrypoint set in compose drops the image's CMD, as Docker does.
            default_cmd = [] if "entrypoint" in service else cmd
            command = service.get("command", default_cmd)
            command = shlex.split(command) if isinstance(command, str) else list(command)
            out.append(
                Invocation(
                    f"{variant}: service {name}",
                    tuple(strip_init(ep + command)),
                    compose_env(service.get("environment")),
                    kind="compose",
                )
            )
    return out


def markdown_shell_blocks(path: Path) -> str:
    """The ```bash blocks of a Markdown file, one after the other."""
    return "\n".join(re.findall(r"^```(?:bash|sh)\n(.*?)^```", path.read_text(), re.M | re.S))


def comment_text(path: Path) -> str:
    """The leading comment block of a file, without its ``#`` markers."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    return "\n".join(lines)


# `docker compose run` and `docker run` options that take a value.
DOCKER_VALUE_OPTIONS = {"-e", "--env", "-v", "--volume", "--name", "-w", "--workdir", "-u"}


def documented_invocations(text: str, where: str, **kw: Any) -> list[Invocation]:
    """The streammix command lines of shell text in the docs: lines that start (after
    ``NAME=value`` assignments) with ``streammix ...``, ``docker compose ... run [opts] job
    ARGS`` (the job's entrypoint is streammix) or ``docker run [opts] IMAGE ARGS``. A run
    without ARGS (the default command) is skipped."""
    out = []
    for lineno, line in shell_logical_lines(text):
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            tokens = list(lex)
        except ValueError:  # prose with an apostrophe
            continue
        while tokens and re.fullmatch(r"\w+=.*", tokens[0]):
            tokens.pop(0)
        args: list[str] | None = None
        if tokens[:2] == ["docker", "compose"] and "run" in tokens:
            after = tokens[tokens.index("run") + 1 :]
            j = 0
            while j < len(after) and after[j].startswith("-"):
                assert after[j] != "--entrypoint", f"{where}:{lineno}: not the job's program"
                j += 2 if after[j] in DOCKER_VALUE_OPTIONS else 1
            if after[j : j + 1] == ["job"]:
                args = after[j + 1 :]
        elif tokens[:2] == ["docker", "run"] and IMAGE in tokens:
            args = tokens[tokens.index(IMAGE) + 1 :]
        elif tokens[:1] == ["streammix"]:
            args = tokens[1:]
        if not args:
            continue
        argv = ["streammix"]
        for word in args:
            if word and set(word) <= set(";&|<>()"):
                break
            argv.extend(expand_shell_word(word, {}))
        out.append(Invocation(f"{where}:{lineno}", tuple(argv), **kw))
    return out


def compose_header_invocations() -> list[Invocation]:
    """The commands at the top of the compose file, run in the job's environment."""
    job = yaml.safe_load(COMPOSE_BASE.read_text())["services"]["job"]
    return documented_invocations(
        comment_text(COMPOSE_BASE),
        f"{COMPOSE_BASE.name} header",
        env=compose_env(job.get("environment")),
        kind="compose",
    )


def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in K8S_FILES for doc in load_yaml(path)]


def pod_specs(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every pod spec (a mapping with ``containers``) below ``node``, with its path."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield path, node
        for key, value in node.items():
            yield from pod_specs(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from pod_specs(value, f"{path}[{i}]")


def operator_env(doc: dict[str, Any], spec_path: str) -> dict[str, str]:
    """What the Dask operator adds to the containers of the pod at ``spec_path``."""
    name = doc["metadata"]["name"]
    if doc["kind"] == "DaskJob" and spec_path.startswith("spec.job."):
        return {"DASK_SCHEDULER_ADDRESS": operator_address(name)}
    if doc["kind"] in ("DaskCluster", "DaskJob") and ".worker." in f".{spec_path}.":
        return {"DASK_SCHEDULER_ADDRESS": operator_address(name), "DASK_WORKER_NAME": "w-0"}
    return {}


def k8s_containers() -> Iterator[tuple[str, dict[str, Any], dict[str, Any], str]]:
    """(where, document, container, pod spec path) for every container of every manifest."""
    for path, doc in k8s_docs():
        for spec_path, spec in pod_specs(doc):
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                where = f"{path.name}: {doc['kind']} {doc['metadata']['name']} {c['name']}"
                yield where, doc, c, spec_path


def expand_k8s_ref(env: Mapping[str, str], m: re.Match[str]) -> str:
    return env[m.group(1)]


def k8s_invocations() -> list[Invocation]:
    entrypoint, cmd = dockerfile_instruction("ENTRYPOINT"), dockerfile_instruction("CMD")
    out = []
    for where, doc, c, spec_path in k8s_containers():
        env = {e["name"]: str(e.get("value", "")) for e in c.get("env", [])}
        env.update(operator_env(doc, spec_path))
        command = c.get("command", entrypoint)
        # `command` without `args` drops the image's CMD, as Kubernetes does.
        args = c.get("args", [] if "command" in c else cmd)
        argv = []
        for arg in [*command, *args]:
            refs = re.findall(r"\$\((\w+)\)", str(arg))
            undefined = [r for r in refs if r not in env]
            assert not undefined, f"{where}: $({undefined[0]}) is not defined in the container"
            argv.append(re.sub(r"\$\((\w+)\)", partial(expand_k8s_ref, env), str(arg)))
        out.append(Invocation(where, tuple(strip_init(argv)), env, kind="k8s"))
    return out


# What an expansion the tests cannot know (``$dir``, ``$(protocol)``) stands for.
SHELL_VALUE = "SHELL-VALUE"


def shell_logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Lines with continuations joined, heredoc bodies and comment lines left out."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        start, line = i + 1, lines[i]
        while line.endswith("\\") and i + 1 < len(lines):
            i += 1
            line = line[:-1] + " " + lines[i].strip()
        i += 1
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", line)
        if heredoc:
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
            i += 1
        if line.strip() and not line.lstrip().startswith("#"):
            yield start, line


def shell_arrays(text: str) -> dict[str, list[str]]:
    """The first non-empty literal definition of every ``name=( ... )`` array."""
    arrays: dict[str, list[str]] = {}
    for m in re.finditer(r"^\s*(\w+)=\(([^)]*)\)", text, flags=re.M):
        words = shlex.split(m.group(2).replace("\\\n", " "), comments=True)
        if words and m.group(1) not in arrays:
            arrays[m.group(1)] = words
    return arrays


def expand_shell_word(word: str, arrays: Mapping[str, list[str]]) -> list[str]:
    """A stand-in for what bash makes of a (shlex-unquoted) word: arrays by their literal
    definition, ``${NAME:-default}`` by its default, other expansions by SHELL_VALUE."""
    m = re.fullmatch(r"\$\{(\w+)\[@\]\}|\$\{(\w+)\[@\]\+\$\{\w+\[@\]\}\}", word)
    if m:
        return list(arrays.get(m.group(1) or m.group(2), []))
    word = re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", word)
    word = re.sub(r"\$\([^)]*\)|\$\{[^}]*\}|\$\w+", SHELL_VALUE, word)
    return [word]


def shell_invocations(path: Path) -> list[Invocation]:
    """Every ``streammix ...`` and ``dask scheduler|worker ...`` command line of a script."""
    text = path.read_text()
    arrays = shell_arrays(text)
    out = []
    for lineno, line in shell_logical_lines(text):
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        lex.commenters = "#"
        try:
            tokens = list(lex)
        except ValueError:  # a line shlex cannot split (unbalanced quotes): no command of ours
            continue
        for i, tok in enumerate(tokens):
            is_streammix = Path(tok).name == "streammix"
            is_dask = tok in ("dask", "$dask_bin") and tokens[i + 1 : i + 2] in (
                ["scheduler"],
                ["worker"],
            )
            if not (is_streammix or is_dask):
                continue
            argv = ["streammix" if is_streammix else "dask"]
            for word in tokens[i + 1 :]:
                if word and set(word) <= set(";&|<>()"):
                    break  # end of the simple command
                argv.extend(expand_shell_word(word, arrays))
            out.append(Invocation(f"{path.name}:{lineno}", tuple(argv)))
    return out


def all_invocations() -> list[Invocation]:
    found = [*compose_invocations(), *compose_header_invocations(), *k8s_invocations()]
    for script in SHELL_SCRIPTS:
        found += shell_invocations(script)
    return found


# ---------------------------------------------------------------------------------------------
# Parsing command lines with the real click commands


@dataclass
class Parsed:
    command: str
    params: dict[str, Any]


def parse_streammix(inv: Invocation, monkeypatch: pytest.MonkeyPatch) -> Parsed:
    """Parse ``inv.argv`` with the streammix CLI; fails the test on a usage error."""
    assert inv.program == "streammix"
    calls: list[Parsed] = []
    monkeypatch.setattr(cli, "callback", lambda **kw: None)
    for name, command in cli.commands.items():

        def record(_name: str = name, **kw: Any) -> None:
            calls.append(Parsed(_name, kw))

        monkeypatch.setattr(command, "callback", record)
    # Only the invocation's own environment: none of this machine's STREAMMIX_* settings.
    env: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith("STREAMMIX_") or k.startswith("DASK_")
    }
    env.update(inv.env)
    result = CliRunner(env=env).invoke(cli, list(inv.argv[1:]), prog_name="streammix")
    assert result.exit_code == 0 and len(calls) == 1, (
        f"{inv.where}: `{shlex.join(inv.argv)}` is not a valid streammix command line:\n"
        f"{result.output}"
    )
    return calls[0]


def dask_command(name: str) -> click.Command:
    if name == "scheduler":
        from distributed.cli.dask_scheduler import main
    else:
        from distributed.cli.dask_worker import main
    return main


def parse_dask(inv: Invocation, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Parsed:
    """Parse ``dask scheduler|worker ...`` with distributed's own click commands."""
    assert inv.program == "dask" and inv.argv[1] in ("scheduler", "worker"), inv
    command = dask_command(inv.argv[1])
    calls: list[Parsed] = []
    monkeypatch.setattr(command, "callback", lambda **kw: calls.append(Parsed(inv.argv[1], kw)))
    # dask insists that TLS files exist: check where they come from, parse with stand-ins.
    args = list(inv.argv[2:])
    stand_in = tmp_path / "stand-in.pem"
    stand_in.write_text("")
    for i, arg in enumerate(args[:-1]):
        if arg in ("--tls-ca-file", "--tls-cert", "--tls-key"):
            args[i + 1] = str(stand_in)
    result = CliRunner(env=dict(inv.env)).invoke(command, args, prog_name=f"dask {inv.argv[1]}")
    assert result.exit_code == 0 and len(calls) == 1, (
        f"{inv.where}: `{shlex.join(inv.argv)}` is not a valid dask command line:\n{result.output}"
    )
    return calls[0]


# ---------------------------------------------------------------------------------------------
# Static checks


def test_every_recipe_is_there():
    expected = [
        DEPLOY / "README.md",
        LOCAL_CLUSTER,
        DOCKERFILE,
        COMPOSE_BASE,
        DEPLOY / "docker" / "docker-compose.tls.yml",
        DEPLOY / "k8s" / "daskcluster.yaml",
        DEPLOY / "k8s" / "daskjob-fit.yaml",
        DEPLOY / "k8s" / "cronjob-nightly-scoring.yaml",
        SECRET_TEMPLATE,
        SBATCH,
    ]
    missing = [str(p.relative_to(ROOT)) for p in expected if not p.is_file()]
    assert not missing
    assert os.access(LOCAL_CLUSTER, os.X_OK), "deploy/local-cluster.sh must be executable"


@pytest.mark.parametrize(
    "path", [COMPOSE_BASE, *COMPOSE_OVERRIDES, *K8S_FILES, SECRET_TEMPLATE], ids=lambda p: p.name
)
def test_yaml_files_parse(path):
    docs = load_yaml(path)
    assert docs, f"{path.name} is empty"
    for doc in docs:
        assert isinstance(doc, dict)
        if path in K8S_FILES or path == SECRET_TEMPLATE:
            assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
            assert doc["metadata"].get("name")


def test_dockerfile_base_image_is_pinned_and_recent_enough():
    text = DOCKERFILE.read_text()
    m = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.M)
    assert m and re.search(r"^FROM \$\{BASE_IMAGE\}$", text, flags=re.M)
    base = re.fullmatch(r"ghcr\.io/dask/dask:(\d{4})\.(\d+)\.(\d+)-py3\.(\d+)", m.group(1))
    assert base, f"base image must be a pinned ghcr.io/dask/dask:<release>-py3.<minor>: {m[1]}"
    dask_floor = next(
        d for d in PYPROJECT["project"]["dependencies"] if re.match(r"dask\b", d)
    ).split(">=")[1]
    release = tuple(int(x) for x in base.group(1, 2, 3))
    assert release >= tuple(int(x) for x in dask_floor.split(".")), "older than dask floor"
    # zarr>=3.1 needs Python 3.11.
    assert int(base.group(4)) >= 11


def test_dockerfile_builds_the_expected_image():
    text = DOCKERFILE.read_text()
    assert f"-t {IMAGE} " in text, f"the build command in the Dockerfile must tag {IMAGE}"
    assert f'org.opencontainers.image.version="{VERSION}"' in text
    assert strip_init(dockerfile_instruction("ENTRYPOINT")) == ["streammix"]
    assert re.search(rf"^COPY pipelines {IMAGE_PIPELINES}$", text, flags=re.M)
    assert re.search(r"^USER \d+$", text, flags=re.M), "run as a numeric, unprivileged user"


def test_dockerfile_installs_the_object_store_extras():
    # The containers read and write s3:// (s3fs) and may be given Parquet data (pyarrow).
    m = re.search(r"pip install (?:\S+ )*\"?\.\[([\w,]+)\]\"?", DOCKERFILE.read_text())
    assert m, "the Dockerfile must install streammix with its extras: pip install '.[...]'"
    extras = set(m.group(1).split(","))
    assert {"s3", "parquet"} <= extras, extras
    assert extras <= set(PYPROJECT["project"]["optional-dependencies"]), extras


def test_one_image_everywhere():
    images: dict[str, str] = {}
    for path in [COMPOSE_BASE, *COMPOSE_OVERRIDES]:
        for name, service in yaml.safe_load(path.read_text())["services"].items():
            if "image" in service and runs_streammix_image(service):
                images[f"{path.name}: {name}"] = service["image"]
            if "build" in service:
                build = service["build"]
                dockerfile = (path.parent / build["context"] / build["dockerfile"]).resolve()
                assert dockerfile == DOCKERFILE, f"{path.name}: {name} builds {dockerfile}"
    for name, service in yaml.safe_load(COMPOSE_BASE.read_text())["services"].items():
        assert "image" in service, f"{COMPOSE_BASE.name}: service {name} has no image"
    for where, _doc, container, _ in k8s_containers():
        images[where] = container.get("image", "")
    assert any("DaskCluster" in w for w in images) and any("CronJob" in w for w in images)
    wrong = {where: image for where, image in images.items() if image != IMAGE}
    assert not wrong, f"every recipe must run {IMAGE}: {wrong}"
    # The other compose services (the object store) run neither streammix nor dask.
    for variant, config in compose_variants().items():
        for name, service in config["services"].items():
            if runs_streammix_image(service):
                continue
            words = [*service.get("entrypoint", []), *service.get("command", [])]
            argv = [t for w in words for t in shlex.split(str(w))]
            programs = {Path(t).name if t.startswith("/") else t for t in argv}
            assert not {"streammix", "dask"} & programs, f"{variant}: {name} runs {argv}"
    # The docs show the same tag.
    for doc in [DEPLOY / "README.md", PIPELINES / "README.md"]:
        tags = set(re.findall(r"\bstreammix:\d+(?:\.\d+)*", doc.read_text()))
        assert tags <= {IMAGE}, f"{doc.relative_to(ROOT)} mentions {tags - {IMAGE}}"


def test_command_lines_are_found():
    invocations = all_invocations()
    by_where: dict[str, set[str]] = {}
    for inv in invocations:
        source = inv.where.split(":")[0]
        what = "streammix" if inv.program == "streammix" else " ".join(inv.argv[:2])
        by_where.setdefault(source, set()).add(what)
    assert {"dask scheduler", "dask worker"} <= by_where[LOCAL_CLUSTER.name]
    assert {"dask scheduler", "dask worker", "streammix"} <= by_where[SBATCH.name]
    assert {"dask scheduler", "dask worker", "streammix"} <= by_where[COMPOSE_BASE.name]
    assert {"dask scheduler", "dask worker"} <= by_where["daskcluster.yaml"]
    assert {"dask scheduler", "dask worker", "streammix"} <= by_where["daskjob-fit.yaml"]
    assert "streammix" in by_where["cronjob-nightly-scoring.yaml"]
    assert "streammix" in by_where[f"{COMPOSE_BASE.name} header"]
    programs = {inv.program for inv in invocations}
    assert programs == {"streammix", "dask"}, programs


def scheduler_host(address: str) -> str:
    m = re.fullmatch(r"(tcp|tls)://([^:/]+):(\d+)", address)
    assert m, f"not a tcp:// or tls:// scheduler address: {address!r}"
    return m.group(2)


def test_streammix_command_lines_are_valid(monkeypatch):
    invocations = [inv for inv in all_invocations() if inv.program == "streammix"]
    assert invocations
    compose_services = {
        name for config in compose_variants().values() for name in config["services"]
    }
    k8s_clusters = {
        doc["metadata"]["name"]
        for _, doc in k8s_docs()
        if doc["kind"] in ("DaskCluster", "DaskJob")
    }
    for inv in invocations:
        parsed = parse_streammix(inv, monkeypatch)
        params = parsed.params
        if "scheduler_address" not in params:
            continue  # a command that needs no cluster
        # Every recipe runs its jobs on the cluster it starts, never on an embedded one.
        address, sfile = params["scheduler_address"], params["scheduler_file"]
        assert address or sfile, f"{inv.where}: no --scheduler-address or --scheduler-file"
        tls = [params["tls_ca_file"], params["tls_cert"], params["tls_key"]]
        assert all(tls) or not any(tls), f"{inv.where}: give all three TLS options or none"
        if address:
            host = scheduler_host(address)
            assert address.startswith("tls://") == all(tls), f"{inv.where}: {address} vs TLS"
            if inv.kind == "compose":
                assert host in compose_services, f"{inv.where}: no compose service {host}"
            elif inv.kind == "k8s":
                cluster = host.split(".")[0].removesuffix("-scheduler")
                assert host.split(".")[0].endswith("-scheduler") and cluster in k8s_clusters, (
                    f"{inv.where}: {address} is not the scheduler of a DaskCluster or DaskJob"
                )


def test_dask_command_lines_are_valid(monkeypatch, tmp_path):
    invocations = [inv for inv in all_invocations() if inv.program == "dask"]
    assert invocations
    for inv in invocations:
        parsed = parse_dask(inv, monkeypatch, tmp_path)
        if parsed.command == "worker":
            assert parsed.params["nthreads"] == 1, f"{inv.where}: workers are single-threaded"
            scheduler = parsed.params["scheduler"] or inv.env.get("DASK_SCHEDULER_ADDRESS")
            assert scheduler or parsed.params["scheduler_file"], f"{inv.where}: no scheduler"
        tls_files = [parsed.params[k] for k in ("tls_ca_file", "tls_cert", "tls_key")]
        assert all(tls_files) or not any(tls_files), f"{inv.where}: partial TLS settings"
        if parsed.command == "worker" and all(tls_files) and parsed.params["scheduler"]:
            assert parsed.params["scheduler"].startswith("tls://"), inv.where
        if parsed.command == "scheduler" and all(tls_files):
            protocol = parsed.params["protocol"]
            assert protocol in ("tls", SHELL_VALUE), f"{inv.where}: TLS files without tls://"


def test_pipelines_exist_and_get_their_environment(monkeypatch):
    runs = []
    for inv in all_invocations():
        if inv.program != "streammix":
            continue
        parsed = parse_streammix(inv, monkeypatch)
        if parsed.command == "run":
            runs.append((inv, parsed.params["pipeline_file"]))
    assert runs, "no recipe runs a pipeline"
    for inv, name in runs:
        if name.startswith(IMAGE_PIPELINES + "/"):
            path = PIPELINES / name.removeprefix(IMAGE_PIPELINES + "/")
        else:
            path = ROOT / name
        assert path.is_file(), f"{inv.where}: pipeline {name} is not in {PIPELINES}"
        if inv.kind in ("compose", "k8s"):
            # Every ${NAME} the pipeline uses must come from the container's environment.
            with monkeypatch.context() as m:
                for var in set(re.findall(r"\$\{(\w+)\}", path.read_text())):
                    m.delenv(var, raising=False)
                for key, value in inv.env.items():
                    m.setenv(key, value)
                load_pipeline(path)


def test_published_ports_are_on_loopback():
    for variant, config in compose_variants().items():
        for name, service in config["services"].items():
            assert service.get("network_mode") != "host", f"{variant}: {name}"
            for port in service.get("ports", []):
                if isinstance(port, dict):
                    host_ip = port.get("host_ip")
                else:
                    host_ip = str(port).rsplit(":", 2)[0] if str(port).count(":") == 2 else None
                assert host_ip == "127.0.0.1", f"{variant}: {name} publishes {port}"
    for _, doc in k8s_docs():
        services = []
        if doc["kind"] == "Service":
            services.append(doc["spec"])
        if doc["kind"] in ("DaskCluster", "DaskJob"):
            cluster = doc["spec"].get("cluster", {}).get("spec", doc["spec"])
            services.append(cluster["scheduler"].get("service", {}))
        for spec in services:
            assert spec.get("type", "ClusterIP") == "ClusterIP", doc["metadata"]["name"]
        for spec_path, spec in pod_specs(doc):
            assert not spec.get("hostNetwork"), f"{doc['metadata']['name']} {spec_path}"
            for c in spec["containers"]:
                assert all("hostPort" not in p for p in c.get("ports", [])), c["name"]


def test_every_dask_cluster_is_fenced_by_a_network_policy():
    docs = [doc for _, doc in k8s_docs()]
    fenced = {
        doc["spec"]["podSelector"]["matchLabels"].get("dask.org/cluster-name")
        for doc in docs
        if doc["kind"] == "NetworkPolicy"
    }
    clusters = {
        doc["metadata"]["name"] for doc in docs if doc["kind"] in ("DaskCluster", "DaskJob")
    }
    assert clusters and clusters <= fenced, f"clusters without a NetworkPolicy: {clusters - fenced}"
    # The CronJob's pods carry a label the policy admits.
    admitted = [
        peer["podSelector"]["matchLabels"]
        for doc in docs
        if doc["kind"] == "NetworkPolicy"
        for rule in doc["spec"].get("ingress", [])
        for peer in rule.get("from", [])
        if "podSelector" in peer
    ]
    for doc in docs:
        if doc["kind"] == "CronJob":
            labels = doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
            assert any(sel.items() <= labels.items() for sel in admitted), labels


def test_no_pod_needs_a_shared_volume():
    docs = [doc for _, doc in k8s_docs()]
    claims = [d["metadata"]["name"] for d in docs if "PersistentVolume" in d["kind"]]
    assert not claims, f"data lives in the object store, no volume is needed: {claims}"
    for doc in docs:
        for spec_path, spec in pod_specs(doc):
            where = f"{doc['metadata']['name']} {spec_path}"
            volumes = {v["name"]: set(v) - {"name"} for v in spec.get("volumes", [])}
            for name, kinds in volumes.items():
                assert kinds <= ALLOWED_POD_VOLUMES, f"{where}: volume {name} is {kinds}"
            for c in [*spec.get("initContainers", []), *spec["containers"]]:
                for mount in c.get("volumeMounts", []):
                    assert mount["name"] in volumes, f"{where}: {c['name']} mounts {mount}"


def compose_volume(volume: Any) -> tuple[str | None, str, bool]:
    """(source, target, read-only) of a compose volume, short or long syntax."""
    if isinstance(volume, dict):
        return volume.get("source"), volume["target"], bool(volume.get("read_only"))
    # ${NAME:-default} holds colons of its own.
    parts = re.sub(r"\$\{[^}]*\}", "$VAR", str(volume)).split(":")
    if len(parts) == 1:
        return None, parts[0], False  # an anonymous volume
    mode = parts[2] if len(parts) > 2 else "rw"
    return parts[0], parts[1], "ro" in mode.split(",")


def is_bind_source(source: str | None) -> bool:
    return source is not None and source[:1] in (".", "/", "~", "$")


def test_compose_services_mount_no_data_volume():
    for variant, config in compose_variants().items():
        named = set(config.get("volumes") or {})
        users: dict[str, list[str]] = {}
        for name, service in config["services"].items():
            for volume in service.get("volumes", []):
                source, _target, read_only = compose_volume(volume)
                if source in named:
                    users.setdefault(source, []).append(name)
                if runs_streammix_image(service):
                    # Only read-only files from this host, such as the TLS certificates.
                    assert is_bind_source(source) and read_only, (
                        f"{variant}: {name} mounts {volume}: data belongs in the object store"
                    )
        for volume, who in users.items():
            assert len(who) == 1, f"{variant}: volume {volume} is shared by {who}"
            assert not runs_streammix_image(config["services"][who[0]]), (variant, volume)
        assert named <= set(users), f"{variant}: unused volumes {named - set(users)}"


def compose_variable(value: str) -> str | None:
    """NAME when ``value`` is exactly ``${NAME}`` or ``${NAME:?message}`` (no default)."""
    m = re.fullmatch(r"\$\{(\w+)(?::?\?[^}]*)?\}", value)
    return m.group(1) if m else None


def test_compose_keeps_secrets_out_of_the_files():
    for path in [COMPOSE_BASE, *COMPOSE_OVERRIDES]:
        text = path.read_text()
        defaults = [v for v in re.findall(r"\$\{(\w+):?[-=]", text) if SECRET_VARIABLE.search(v)]
        assert not defaults, f"{path.name}: secrets with a default value: {defaults}"
    for variant, config in compose_variants().items():
        for name, service in config["services"].items():
            for key, value in compose_env(service.get("environment")).items():
                if SECRET_VARIABLE.search(key):
                    assert compose_variable(value), f"{variant}: {name} sets {key} literally"
    # The file compose reads the keys from stays out of version control.
    ignores = [DEPLOY / "docker" / ".gitignore", ROOT / ".gitignore"]
    patterns = {line.strip() for p in ignores if p.is_file() for line in p.read_text().splitlines()}
    assert patterns & {".env", "/.env", "deploy/docker/.env", "/deploy/docker/.env"}


def test_compose_data_services_get_the_store_credentials():
    for variant, config in compose_variants().items():
        services = config["services"]
        programs = set()
        for name, service in services.items():
            if not runs_streammix_image(service):
                continue
            where = f"{variant}: {name}"
            program = compose_program(service)
            programs.add(program)
            env = compose_env(service.get("environment"))
            if program == "dask scheduler":
                assert not set(env) & set(STORE_ENV), f"{where}: the scheduler needs no keys"
                continue
            assert program in ("streammix", "dask worker"), where
            assert not set(STORE_ENV) - set(env), f"{where}: missing {set(STORE_ENV) - set(env)}"
            assert env["AWS_DEFAULT_REGION"], where
            # The endpoint is the store service, on the port its server listens on.
            endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
            assert endpoint.scheme in ("http", "https") and endpoint.port, where
            store = services.get(endpoint.hostname)
            assert store and not runs_streammix_image(store), f"{where}: no store {endpoint}"
            assert any(str(w).endswith(f":{endpoint.port}") for w in store["command"]), where
            # The keys are the store's own, from the environment compose runs in.
            store_env = compose_env(store.get("environment"))
            for key, store_key in zip(
                STORE_KEYS, ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"), strict=True
            ):
                variable = compose_variable(env[key])
                assert variable, f"{where}: {key} must come from the environment"
                assert variable == compose_variable(store_env[store_key]), f"{where}: {key}"
            # They wait for the bucket.
            ready = {
                dep: cond.get("condition")
                for dep, cond in service.get("depends_on", {}).items()
                if not runs_streammix_image(services[dep])
            }
            assert "service_completed_successfully" in ready.values(), f"{where}: {ready}"
        assert {"streammix", "dask worker", "dask scheduler"} <= programs, variant


def compose_buckets(config: dict[str, Any]) -> set[str]:
    """The buckets of the s3:// URLs the streammix services and the header commands name."""
    values = [
        v
        for service in config["services"].values()
        if runs_streammix_image(service)
        for v in compose_env(service.get("environment")).values()
    ]
    values += [w for inv in compose_header_invocations() for w in inv.argv]
    return {urlsplit(v).netloc for v in values if v.startswith(STORE_SCHEME)}


def test_compose_creates_the_bucket_it_uses():
    config = yaml.safe_load(COMPOSE_BASE.read_text())
    services = config["services"]
    buckets = compose_buckets(config)
    assert buckets, "the compose file names no s3:// location"
    waited_for = {
        dep
        for service in services.values()
        if runs_streammix_image(service)
        for dep, cond in service.get("depends_on", {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }
    assert len(waited_for) == 1, waited_for
    (setup,) = waited_for
    script = " ".join(str(w) for w in services[setup].get("command", []))
    for bucket in buckets:
        assert re.search(rf"\bmb\b.*/{re.escape(bucket)}\b", script), (setup, bucket, script)
    assert services[setup].get("restart") == "no", f"{setup} runs once"
    # It waits until the store answers, which needs a health check.
    store = [
        d for d, c in services[setup]["depends_on"].items() if c == {"condition": "service_healthy"}
    ]
    assert store and all("healthcheck" in services[s] for s in store), setup


def test_third_party_images_are_pinned():
    services = yaml.safe_load(COMPOSE_BASE.read_text())["services"]
    others = {n: s["image"] for n, s in services.items() if not runs_streammix_image(s)}
    assert others, "the compose file runs no object store"
    for name, image in others.items():
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag and tag not in ("", "latest"), f"{name}: {image}"
        if repository.split("/")[-1] in ("minio", "mc"):
            # MinIO's releases are tagged RELEASE.<UTC time stamp>.
            assert re.fullmatch(r"RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", tag), image


def k8s_programs() -> Iterator[tuple[str, dict[str, Any], dict[str, Any], str]]:
    """(where, document, container, program) with program ``streammix``, ``dask scheduler``
    or ``dask worker``."""
    for (where, doc, c, _), inv in zip(k8s_containers(), k8s_invocations(), strict=True):
        yield where, doc, c, "streammix" if inv.program == "streammix" else " ".join(inv.argv[:2])


def secret_template() -> dict[str, Any]:
    (doc,) = load_yaml(SECRET_TEMPLATE)
    return doc


def from_secret(container: dict[str, Any], key: str, secret: str) -> bool:
    """Whether ``key`` reaches the container's environment from the Secret ``secret``."""
    for e in container.get("env", []):
        if e["name"] == key:
            ref = e.get("valueFrom", {}).get("secretKeyRef", {})
            return ref.get("name") == secret and ref.get("key") == key
    return any(
        src.get("secretRef", {}).get("name") == secret and not src.get("prefix")
        for src in container.get("envFrom", [])
    )


def test_k8s_data_containers_get_the_store_keys_from_the_secret():
    template = secret_template()
    secret = template["metadata"]["name"]
    keys = set(template.get("stringData", {}))
    kinds = set()
    for where, doc, c, program in k8s_programs():
        literal = {e["name"] for e in c.get("env", []) if "value" in e}
        assert not {k for k in literal if SECRET_VARIABLE.search(k)}, f"{where}: literal secret"
        refs = [e for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})]
        refs += [src for src in c.get("envFrom", []) if "secretRef" in src]
        if program == "dask scheduler":
            assert not refs, f"{where}: the scheduler needs no keys"
            continue
        assert program in ("streammix", "dask worker"), where
        for key in STORE_KEYS:
            assert key in keys and from_secret(c, key, secret), f"{where}: {key} from {secret}"
        for e in c.get("env", []):
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            assert not ref or ref["key"] in keys, f"{where}: {ref} is not in the template"
        kinds.add(doc["kind"])
    assert {"DaskCluster", "DaskJob", "CronJob"} <= kinds, kinds
    # The real Secret is created by hand, never applied from these files.
    assert not [doc for _, doc in k8s_docs() if doc["kind"] == "Secret"]


def test_secret_template_holds_only_placeholders():
    doc = secret_template()
    assert doc["kind"] == "Secret" and doc.get("type", "Opaque") == "Opaque"
    assert "data" not in doc, "base64 hides what is in it: use stringData"
    values = doc["stringData"]
    assert set(STORE_KEYS) <= set(values) <= set(STORE_ENV), set(values)
    for key in STORE_KEYS:
        assert re.fullmatch(r"REPLACE-ME", values[key]), f"{key} must be a placeholder"
    # `kubectl apply -f deploy/k8s/` skips it; the comment says how to create the real one.
    assert SECRET_TEMPLATE.suffix not in (".yaml", ".yml", ".json")
    header = " ".join(comment_text(SECRET_TEMPLATE).replace("\\", " ").split())
    assert f"kubectl create secret generic {doc['metadata']['name']} " in header
    for key in values:
        assert f"--from-literal={key}=" in header, key


def test_network_policies_let_data_pods_reach_the_store():
    docs = [doc for _, doc in k8s_docs()]
    pods = [
        {"dask.org/cluster-name": doc["metadata"]["name"]}
        for doc in docs
        if doc["kind"] in ("DaskCluster", "DaskJob")
    ]
    pods += [
        doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
        for doc in docs
        if doc["kind"] == "CronJob"
    ]
    selecting = 0
    for policy in (doc for doc in docs if doc["kind"] == "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        if not any(selector.items() <= labels.items() for labels in pods):
            continue
        selecting += 1
        if "Egress" in policy["spec"].get("policyTypes", []):
            assert policy["spec"].get("egress"), f"{policy['metadata']['name']} cuts off the store"
    assert selecting


def test_recipes_keep_data_in_the_object_store(monkeypatch):
    """Every location a compose or Kubernetes job names, directly or through its pipeline,
    is an s3:// URL: nothing is read from or written to a container's file system."""
    checked: dict[str, int] = {}
    for inv in all_invocations():
        if inv.program != "streammix" or inv.kind not in ("compose", "k8s"):
            continue
        parsed = parse_streammix(inv, monkeypatch)
        locations = {k: parsed.params.get(k) for k in LOCATION_PARAMS}
        if parsed.command == "run":
            for var in ("STREAMMIX_DATA", "STREAMMIX_MODELS", "STREAMMIX_OUT"):
                assert inv.env.get(var, "").startswith(STORE_SCHEME), f"{inv.where}: {var}"
            name = parsed.params["pipeline_file"]
            path = PIPELINES / name.removeprefix(IMAGE_PIPELINES + "/")
            with monkeypatch.context() as m:
                for key, value in inv.env.items():
                    m.setenv(key, value)
                pipeline = load_pipeline(path)
            for step in pipeline.steps:
                locations.update(
                    {f"step {step.index} {k}": step.options.get(k) for k in LOCATION_PARAMS}
                )
        for key, value in locations.items():
            if value is not None:
                assert str(value).startswith(STORE_SCHEME), f"{inv.where}: {key} = {value}"
        checked[inv.kind] = checked.get(inv.kind, 0) + 1
    assert checked.get("compose") and checked.get("k8s"), checked


def test_compose_header_generates_what_the_job_reads(monkeypatch):
    job = yaml.safe_load(COMPOSE_BASE.read_text())["services"]["job"]
    data = compose_env(job["environment"])["STREAMMIX_DATA"]
    commands = [parse_streammix(inv, monkeypatch) for inv in compose_header_invocations()]
    assert [c.params["out"] for c in commands if c.command == "generate"] == [data]
    assert "run" in {c.command for c in commands}


def test_readme_shows_the_object_store():
    text = README.read_text()
    template = secret_template()
    for needle in [
        template["metadata"]["name"],
        *template["stringData"],
        "--storage-options",
        "STREAMMIX_STORAGE_OPTIONS",
        "streammix[s3]",
        "[parquet]",
        "pointer",
        SECRET_TEMPLATE.name,
    ]:
        assert needle in text, f"deploy/README.md does not mention {needle}"


def test_documented_command_lines_are_valid(monkeypatch):
    invocations = documented_invocations(markdown_shell_blocks(README), f"{README.name} code")
    assert len(invocations) >= 5, invocations
    for inv in invocations:
        parse_streammix(inv, monkeypatch)


def test_cronjobs_never_overlap():
    cronjobs = [doc for _, doc in k8s_docs() if doc["kind"] == "CronJob"]
    assert cronjobs
    for doc in cronjobs:
        assert doc["spec"]["concurrencyPolicy"] == "Forbid", doc["metadata"]["name"]


@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    if shutil.which("shellcheck"):
        proc = subprocess.run(
            ["shellcheck", "-S", "warning", str(script)], capture_output=True, text=True
        )
        assert proc.returncode == 0, proc.stdout


def test_local_cluster_refuses_bad_arguments(tmp_path):
    env = {**os.environ, "STREAMMIX_CLUSTER_DIR": str(tmp_path / "state")}
    for args in (["start", "0"], ["start", "two"], ["start", "1", "2"], ["bogus"]):
        proc = subprocess.run(
            ["bash", str(LOCAL_CLUSTER), *args], capture_output=True, text=True, env=env, timeout=30
        )
        assert proc.returncode != 0, args
    proc = subprocess.run(
        ["bash", str(LOCAL_CLUSTER), "status"], capture_output=True, text=True, env=env, timeout=30
    )
    assert proc.returncode == 3 and "not running" in proc.stdout
    assert not (tmp_path / "state" / "scheduler.pid").exists()


# ---------------------------------------------------------------------------------------------
# The local cluster, for real


def group_members(pgid: int) -> list[psutil.Process]:
    """Live (non-zombie) processes of the process group ``pgid``."""
    members = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                members.append(p)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def processes_of(state: Path) -> list[psutil.Process]:
    """Live processes whose command line names the state directory ``state``."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and any(str(state) in a for a in p.cmdline()):
                found.append(p)
        except psutil.Error:
            continue
    return found


def listening_addresses(processes: list[psutil.Process]) -> set[str]:
    found = set()
    for p in processes:
        try:
            conns = p.net_connections(kind="inet")
        except psutil.Error:
            continue
        found |= {c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN}
    return found


@dataclass
class LocalCluster:
    state: Path
    env: dict[str, str]
    tls: dict[str, str]
    pgids: list[int] = field(default_factory=list)

    @property
    def scheduler_file(self) -> Path:
        return self.state / "scheduler.json"

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(LOCAL_CLUSTER), *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=90,
        )

    def security(self) -> Any:
        if not self.tls:
            return None
        from distributed.security import Security

        return Security(
            tls_ca_file=self.tls["STREAMMIX_TLS_CA_FILE"],
            tls_client_cert=self.tls["STREAMMIX_TLS_CERT"],
            tls_client_key=self.tls["STREAMMIX_TLS_KEY"],
            require_encryption=True,
        )


def make_certificate(directory: Path) -> dict[str, str]:
    """One self-signed certificate used as CA, scheduler, worker and client certificate."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    directory.mkdir()
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=streammix-test",
            "-keyout",
            str(directory / "key.pem"),
            "-out",
            str(directory / "cert.pem"),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    cert, key = str(directory / "cert.pem"), str(directory / "key.pem")
    return {"STREAMMIX_TLS_CA_FILE": cert, "STREAMMIX_TLS_CERT": cert, "STREAMMIX_TLS_KEY": key}


@pytest.fixture(params=["tcp", "tls"])
def local_cluster(request, tmp_path) -> Iterator[LocalCluster]:
    """``local-cluster.sh start 2`` in a private state directory; everything is stopped after,
    also when the test or the start fails."""
    dask_bin = Path(sys.executable).with_name("dask")
    if not dask_bin.exists():
        found = shutil.which("dask")
        if found is None:
            pytest.skip("no dask executable")
        dask_bin = Path(found)
    tls = make_certificate(tmp_path / "tls") if request.param == "tls" else {}
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMMIX_")}
    env.update(
        STREAMMIX_CLUSTER_DIR=str(tmp_path / "state"),
        STREAMMIX_SCHEDULER_PORT="0",
        STREAMMIX_CLUSTER_TIMEOUT="60",
        STREAMMIX_DASK=str(dask_bin),
        STREAMMIX_PYTHON=sys.executable,
        **tls,
    )
    cluster = LocalCluster(tmp_path / "state", env, tls)

    def finalize() -> None:
        # What the pid files say now, plus what they said after start (stop deletes them).
        for pidfile in cluster.state.glob("*.pid"):
            text = pidfile.read_text().strip()
            if text.isdigit():
                cluster.pgids.append(int(text))
        cluster.script("stop")
        leftovers = [p for pgid in set(cluster.pgids) for p in group_members(pgid)]
        for p in [*leftovers, *processes_of(cluster.state)]:
            with contextlib.suppress(psutil.Error):
                p.kill()

    request.addfinalizer(finalize)
    proc = cluster.script("start", "2")
    for name in ("scheduler.pid", "workers.pid"):
        pidfile = cluster.state / name
        if pidfile.exists():
            cluster.pgids.append(int(pidfile.read_text().strip()))
    assert proc.returncode == 0, f"start failed:\n{proc.stdout}\n{proc.stderr}"
    yield cluster


@pytest.mark.cluster
def test_local_cluster_start_status_stop(local_cluster):
    from distributed import Client

    cluster = local_cluster
    info = json.loads(cluster.scheduler_file.read_text())
    scheme = "tls" if cluster.tls else "tcp"
    assert info["address"].startswith(f"{scheme}://127.0.0.1:")
    assert len(cluster.pgids) == 2

    with Client(
        scheduler_file=str(cluster.scheduler_file), security=cluster.security(), timeout=20
    ) as client:
        nthreads = client.nthreads()
        assert len(nthreads) == 2
        assert set(nthreads.values()) == {1}
        assert all(addr.startswith(f"{scheme}://127.0.0.1:") for addr in nthreads)
        assert client.submit(sum, [1, 2, 3]).result(timeout=20) == 6

    if cluster.tls:  # without the certificates, the scheduler does not talk to us
        with pytest.raises((OSError, TypeError, ValueError)):
            # not the default client: a failed construction must leave no global state
            Client(scheduler_file=str(cluster.scheduler_file), timeout=3, set_as_default=False)

    # Nothing of the cluster listens beyond loopback (scheduler, nannies, workers, HTTP).
    members = [p for pgid in cluster.pgids for p in group_members(pgid)]
    assert len(members) >= 4  # scheduler, worker launcher, two worker processes
    assert listening_addresses(members) == {"127.0.0.1"}

    if not cluster.tls:  # a streammix job runs on it (TLS: same options, tested elsewhere)
        log = cluster.state / "scheduler.log"
        clients_before = log.read_text().count("Receive client connection")
        proc = subprocess.run(
            [
                str(Path(sys.executable).with_name("streammix")),
                "--quiet",
                "generate",
                str(cluster.state.parent / "data.zarr"),
                "--n-samples",
                "2000",
                "--n-features",
                "2",
                "--chunk-rows",
                "500",
                "--json",
                "--scheduler-file",
                str(cluster.scheduler_file),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("STREAMMIX_")},
        )
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["n_chunks"] == 4
        # It ran on this cluster, not on an embedded one.
        assert log.read_text().count("Receive client connection") > clients_before

    status = cluster.script("status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert "connected workers: 2" in status.stdout

    again = cluster.script("start", "2")
    assert again.returncode != 0 and "already running" in again.stderr
    assert all(group_members(pgid) for pgid in cluster.pgids), "a second start stopped the first"

    stop = cluster.script("stop")
    assert stop.returncode == 0, stop.stderr
    assert not any(group_members(pgid) for pgid in cluster.pgids)
    assert not list(cluster.state.glob("*.pid"))
    assert not cluster.scheduler_file.exists()
    assert cluster.script("status").returncode == 3


@pytest.mark.cluster
def test_local_cluster_stops_what_it_started_when_start_fails(tmp_path):
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMMIX_")}
    env.update(
        STREAMMIX_CLUSTER_DIR=str(state),
        STREAMMIX_SCHEDULER_PORT="0",
        STREAMMIX_PYTHON=sys.executable,
        STREAMMIX_WORKER_MEMORY="not-a-size",  # the workers cannot start
    )
    if Path(sys.executable).with_name("dask").exists():
        env["STREAMMIX_DASK"] = str(Path(sys.executable).with_name("dask"))
    try:
        proc = subprocess.run(
            ["bash", str(LOCAL_CLUSTER), "start", "2"],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "workers exited" in proc.stderr and "interpret" in proc.stderr  # dask's error
        assert not processes_of(state), "a failed start left processes behind"
        assert not list(state.glob("*.pid")) and not (state / "scheduler.json").exists()
    finally:
        for p in processes_of(state):
            with contextlib.suppress(psutil.Error):
                p.kill()
