"""The deployment artefacts agree with each other, with the runbook, and with the metrics the code exports."""

from __future__ import annotations

import ast
import importlib
import json
import re
import tempfile
import tomllib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from dramatiq.brokers.redis import RedisBroker
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric

import pipeline.metrics  # declares the saga's and the reaper's metrics on the default registry
from api.metrics import ApiMetrics
from pipeline.config import Settings
from pipeline.saga import SAGA_QUEUES, WEBHOOK_QUEUE

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"  # applied as a folder: `kubectl apply -f deploy/k8s/`
SECRET_TEMPLATE = DEPLOY / "secrets.example.yaml"  # outside the folder, so applying it never overwrites the Secret
DASHBOARD = DEPLOY / "grafana" / "orderflow.json"
RUNBOOK = ROOT / "docs" / "runbook.md"
ARTEFACTS = [
    "deploy/Dockerfile",
    ".dockerignore",
    "deploy/prometheus.yml",
    "deploy/alerts.yml",
    "deploy/grafana/orderflow.json",
    "deploy/secrets.example.yaml",
    "docs/runbook.md",
    "docs/architecture.md",
    *(
        f"deploy/k8s/{name}.yaml"
        for name in ("api", "worker", "webhooks", "reaper", "migrate-job", "keda-scaledobject")
    ),
    "deploy/k8s/config.yaml",
]
AUTOSCALER_MODULES = ("workers.autoscale.metrics", "workers.autoscale.supervisor")
SETTINGS_ENV = {field.upper() for field in Settings.model_fields}

METRIC_NAME = re.compile(r"\b(?:orderflow|dramatiq)_[A-Za-z0-9_]+")
SELECTOR = re.compile(r"\b((?:orderflow|dramatiq)_[A-Za-z0-9_]+)\s*\{([^}]*)\}")
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)\s*\(")
TARGET_LABELS = {"job", "instance"}  # added by Prometheus to every scraped series
QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# The series a metric family exposes, by family type (prometheus_client strips `_total` from counter families).
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
    "info": ("_info",),
}
CONSTRUCTORS = {
    "Counter": "counter",
    "Gauge": "gauge",
    "Histogram": "histogram",
    "Summary": "summary",
    "Info": "info",
    "CounterMetricFamily": "counter",
    "GaugeMetricFamily": "gauge",
    "HistogramMetricFamily": "histogram",
    "SummaryMetricFamily": "summary",
}


# ---- reading the artefacts ------------------------------------------------------------------------------


def yaml_documents(path: Path) -> list[Any]:
    return [document for document in yaml.safe_load_all(path.read_text()) if document is not None]


def k8s_objects() -> list[dict[str, Any]]:
    """What `kubectl apply -f deploy/k8s/` creates: every document of the folder's .yaml, .yml and .json files."""
    paths = sorted(path for path in K8S.iterdir() if path.suffix in (".yaml", ".yml", ".json"))
    return [document for path in paths for document in yaml_documents(path)]


def secret_templates() -> list[dict[str, Any]]:
    return yaml_documents(SECRET_TEMPLATE)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [item for item in k8s_objects() if item["kind"] == kind]


def the(kind: str, name: str) -> dict[str, Any]:
    found = [item for item in of_kind(kind) if item["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} named {name}, found {len(found)}"
    return found[0]


def workloads() -> list[dict[str, Any]]:
    return of_kind("Deployment") + of_kind("Job")


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = workload["spec"]["template"]["spec"]
    return spec


def the_container(workload: dict[str, Any]) -> dict[str, Any]:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(container, dict)
    return container


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


def container_port(container: dict[str, Any], port: int | str) -> int:
    """The number of a container port given by number or by name."""
    ports = {entry.get("name"): entry["containerPort"] for entry in container.get("ports", [])}
    return ports[port] if isinstance(port, str) else port


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {entry["name"]: entry["value"] for entry in container.get("env", [])}


def secret_keys(secret: dict[str, Any]) -> set[str]:
    return {*secret.get("stringData", {}), *secret.get("data", {})}


def trigger_auth_refs() -> set[tuple[str, str]]:
    """(secret name, key) pairs the KEDA TriggerAuthentications read."""
    return {
        (ref["name"], ref["key"])
        for auth in of_kind("TriggerAuthentication")
        for ref in auth["spec"]["secretTargetRef"]
    }


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml_documents(DEPLOY / "alerts.yml")[0]["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_queries(node: Any) -> Iterator[str]:
    """Every PromQL string of the dashboard: panel target `expr`s and templating `query`s."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("expr", "query") and isinstance(value, str):
                yield value
            else:
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def runbook_sections() -> dict[str, str]:
    """Second-level heading -> the text under it."""
    parts = re.split(r"^## +(.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {heading.strip(): body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def anchors(markdown: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found, fenced = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6} +(.+)", line)):
            found.add(re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-"))
    return found


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def dockerfile_labels() -> dict[str, str]:
    """The final stage's LABEL pairs (continued lines joined), with each ARG's default put in for `${ARG}`."""
    final = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").rsplit("\nFROM ", 1)[1]
    defaults = dict(re.findall(r'^ARG +(\w+)="?([^"\n]*)"?$', final, flags=re.MULTILINE))
    labels: dict[str, str] = {}
    for line in re.findall(r"^LABEL +(.+)$", final, flags=re.MULTILINE):
        for key, value in re.findall(r'([\w.\-]+)="([^"]*)"', line):
            labels[key] = re.sub(r"\$\{(\w+)\}", lambda arg: defaults[arg[1]], value)
    return labels


def dockerfile_user() -> str:
    users = re.findall(r"^USER +(\S+)", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert users, "the Dockerfile sets no USER: the processes would run as root"
    return str(users[-1])


# ---- the metrics the code exports -----------------------------------------------------------------------


def series(name: str, kind: str) -> set[str]:
    base = name.removesuffix("_total") if kind == "counter" else name
    return {base + suffix for suffix in SUFFIXES.get(kind, ("",))}


def family_series(families: Iterable[Metric]) -> set[str]:
    return {name for family in families for name in series(family.name, family.type)}


def declared_in_source(path: Path) -> set[str]:
    """Metric names given as literals to prometheus_client constructors (also those built only at scrape time)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.Call):
            continue
        called = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if called not in CONSTRUCTORS:
            continue
        literal = node.args[0] if node.args else next((kw.value for kw in node.keywords if kw.arg == "name"), None)
        if isinstance(literal, ast.Constant) and isinstance(literal.value, str):
            names |= series(literal.value, CONSTRUCTORS[called])
    return names


def dramatiq_metrics() -> list[MetricWrapperBase]:
    """Dramatiq's Prometheus middleware declares its metrics at process boot, into a registry of its own."""
    with tempfile.TemporaryDirectory() as folder, pytest.MonkeyPatch.context() as patch:
        # after_process_boot points these at its folder; the patch puts the environment back afterwards.
        for variable in ("dramatiq_prom_db", "PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
            patch.setenv(variable, folder)
        from dramatiq.middleware.prometheus import Prometheus

        middleware = Prometheus()
        middleware.after_process_boot(None)  # type: ignore[no-untyped-call]
    return [value for value in vars(middleware).values() if isinstance(value, MetricWrapperBase)]


def autoscaler_modules() -> dict[str, Path]:
    """The autoscaler's modules that exist, by dotted name."""
    paths = {module: ROOT / Path(*module.split(".")).with_suffix(".py") for module in AUTOSCALER_MODULES}
    return {module: path for module, path in paths.items() if path.exists()}


def autoscaler_series() -> set[str]:
    """The autoscaler's metrics: its module's registries and metric objects, and what its source declares."""
    names: set[str] = set()
    for module_name, source in autoscaler_modules().items():
        module = importlib.import_module(module_name)
        for value in vars(module).values():
            if isinstance(value, CollectorRegistry | MetricWrapperBase):
                names |= family_series(value.collect())
        names |= declared_in_source(source)
    return names


@pytest.fixture(scope="module")
def exported() -> set[str]:
    names = autoscaler_series()  # first: whatever it declares on the default registry is collected below
    names |= family_series(REGISTRY.collect())  # pipeline.metrics
    names |= family_series(ApiMetrics().registry.collect())
    names |= family_series(family for metric in dramatiq_metrics() for family in metric.collect())
    return names


@pytest.fixture(scope="module")
def labels() -> dict[str, set[str]]:
    """Each exported series' label names, read from the metric objects of every process."""
    sources = [vars(pipeline.metrics), vars(ApiMetrics())]
    sources += [vars(importlib.import_module(module)) for module in autoscaler_modules()]
    metrics = [value for source in sources for value in source.values() if isinstance(value, MetricWrapperBase)]
    found: dict[str, set[str]] = {}
    for metric in [*metrics, *dramatiq_metrics()]:
        for name in series(metric._name, str(metric._type)):
            found[name] = set(metric._labelnames) | ({"le"} if name.endswith("_bucket") else set())
    return found


def metric_names(promql: str) -> set[str]:
    """Names of orderflow's and Dramatiq's series in an expression (label values in quotes are ignored)."""
    return set(METRIC_NAME.findall(QUOTED.sub('""', promql)))


def unexported(expressions: Iterable[str], exported: set[str]) -> set[str]:
    return {name for expression in expressions for name in metric_names(expression)} - exported


def enclosed(text: str, opening: int) -> str:
    """The parenthesised expression that starts at text[opening]."""
    depth = 0
    for index in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[opening : index + 1]
    raise AssertionError(f"unbalanced parentheses in {text}")


def label_problems(promql: str, labels: dict[str, set[str]]) -> list[str]:
    """Labels matched in `name{...}`, or grouped in `by (...) (expr)`, that the series in question do not have."""
    problems = []
    for name, matchers in SELECTOR.findall(promql):
        used = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", QUOTED.sub('""', matchers)))
        problems += [f"{name} has no label {label}" for label in sorted(used - labels.get(name, used) - TARGET_LABELS)]
    for grouping in GROUPING.finditer(promql):
        grouped = {label.strip() for label in grouping[1].split(",") if label.strip()}
        for name in sorted(metric_names(enclosed(promql, grouping.end() - 1))):
            missing = grouped - labels.get(name, grouped) - TARGET_LABELS
            problems += [f"{name} has no label {label} to group by" for label in sorted(missing)]
    return problems


# ---- the files ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("artefact", ARTEFACTS)
def test_every_deployment_artefact_is_there(artefact: str) -> None:
    assert (ROOT / artefact).is_file()


@pytest.mark.parametrize("path", sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]), ids=lambda p: p.name)
def test_every_yaml_file_under_deploy_parses_into_documents(path: Path) -> None:
    documents = yaml_documents(path)
    assert documents and all(isinstance(document, dict) for document in documents)


def test_the_dockerfile_installs_the_project_on_a_slim_python_and_runs_as_a_numeric_non_root_user() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    bases = re.findall(r"^FROM +python:3\.(\d+)-slim\b", text, flags=re.MULTILINE)
    assert bases and all(int(minor) >= 11 for minor in bases)
    assert re.search(r"^RUN pip install \.$", text, flags=re.MULTILINE)
    user = dockerfile_user().split(":")[0]
    assert user.isdigit() and int(user) != 0, "a numeric uid lets Kubernetes' runAsNonRoot verify it"
    assert text.rindex("USER ") > text.rindex("FROM "), "USER must be set in the final stage"


def test_the_dockerfile_installs_the_dependencies_before_it_copies_the_source() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    build = text[: text.rindex("\nFROM ")]
    assert re.search(r"^COPY pyproject\.toml \./$", build, flags=re.MULTILINE)
    steps = [build.index(step) for step in ("COPY pyproject.toml", "pip install -r ", "COPY . .", "RUN pip install .")]
    assert steps == sorted(steps), "pyproject.toml, its dependencies, then the source and the project itself"
    assert "['project']['dependencies']" in build, "the dependency layer reads the list pyproject.toml declares"


def test_the_image_carries_oci_labels_that_agree_with_pyproject_and_the_manifests() -> None:
    labels, project = dockerfile_labels(), pyproject()["project"]
    prefix = "org.opencontainers.image."
    assert {f"{prefix}{key}" for key in ("title", "description", "version", "source", "revision")} <= set(labels)
    assert labels[f"{prefix}title"] == project["name"]
    assert labels[f"{prefix}description"] == project["description"]
    assert labels[f"{prefix}version"] == project["version"]
    images = {container["image"] for item in workloads() for container in containers(item)}
    assert images == {f"{project['name']}:{project['version']}"}, "the manifests run the version the image is labelled"


def test_the_docker_build_context_leaves_out_the_local_state() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".localstack", ".git"} <= ignored


# ---- Kubernetes -----------------------------------------------------------------------------------------


def test_every_kubernetes_object_is_named_uniquely_and_labelled_as_part_of_orderflow() -> None:
    objects = k8s_objects() + secret_templates()
    keys = [(item["kind"], item["metadata"]["name"]) for item in objects]
    assert len(keys) == len(set(keys))
    assert all(item["metadata"]["labels"]["app.kubernetes.io/part-of"] == "orderflow" for item in objects)


def test_each_deployment_selects_its_own_pods_and_no_other_workloads_pods() -> None:
    for deployment in of_kind("Deployment"):
        selector = deployment["spec"]["selector"]["matchLabels"]
        assert selects(selector, pod_labels(deployment)), deployment["metadata"]["name"]
        name = deployment["metadata"]["name"]
        others = [item for item in workloads() if item["metadata"]["name"] != name]
        assert not any(selects(selector, pod_labels(other)) for other in others), deployment["metadata"]["name"]


def test_the_api_service_selects_exactly_the_api_pods_on_port_8000() -> None:
    service, api = the("Service", "orderflow-api"), the("Deployment", "orderflow-api")
    selected = [
        item["metadata"]["name"] for item in workloads() if selects(service["spec"]["selector"], pod_labels(item))
    ]
    assert selected == ["orderflow-api"]
    (port,) = service["spec"]["ports"]
    assert port["port"] == 8000
    assert container_port(the_container(api), port["targetPort"]) == 8000


def test_the_api_is_ready_on_readyz_and_alive_on_healthz_routes_that_exist() -> None:
    from api.health import router

    container = the_container(the("Deployment", "orderflow-api"))
    readiness, liveness = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (readiness["path"], liveness["path"]) == ("/readyz", "/healthz")
    assert {readiness["path"], liveness["path"]} <= {route.path for route in router.routes}  # type: ignore[attr-defined]
    assert container_port(container, readiness["port"]) == container_port(container, liveness["port"]) == 8000
    assert container["command"][:3] == ["uvicorn", "api.app:create_app", "--factory"]
    assert "0.0.0.0" in container["command"], "bound to loopback, the pod would not be reachable"


def test_the_worker_pod_supervises_one_dramatiq_process_of_8_threads_and_serves_its_metrics() -> None:
    from workers.autoscale.pool import WorkerPool
    from workers.autoscale.supervisor import main

    worker = the("Deployment", "orderflow-worker")
    container = the_container(worker)
    program, arguments = container["command"][:3], container["command"][3:]
    assert program == ["python", "-m", "workers.autoscale"]
    app = typer.Typer()
    app.command()(main)
    options = typer.main.get_command(app).make_context("autoscale", list(arguments)).params
    assert (options["min_workers"], options["max_workers"]) == (1, 1), "one process per pod; KEDA adds pods"
    assert not options["queue"], "the saga's queues, the supervisor's default"
    pool = WorkerPool(options["threads"], Path(options["metrics_dir"]), options["grace_s"], SAGA_QUEUES)
    command = ["-m", "dramatiq", "workers.saga.worker", "--processes", "1", "--threads", "8", "--queues"]
    assert pool.command[1:] == [*command, *SAGA_QUEUES]
    assert pool.env["dramatiq_prom_db"].startswith("/tmp/"), "the multiprocess folder must be on the writable /tmp"
    assert container_port(container, "metrics") == options["metrics_port"]
    assert options["grace_s"] < worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    (config_map,) = of_kind("ConfigMap")
    forbidden = {"dramatiq_prom_db", "PROMETHEUS_MULTIPROC_DIR"}  # the supervisor refuses to start with either
    assert not forbidden & (set(env_of(container)) | set(config_map["data"]))
    assert "replicas" not in worker["spec"], "KEDA owns the worker count; a fixed replicas would fight it"


def test_the_webhook_pods_supervise_workers_of_the_webhooks_queue_alone_and_serve_their_metrics() -> None:
    from workers.autoscale.pool import WorkerPool
    from workers.autoscale.supervisor import main

    webhooks = the("Deployment", "orderflow-webhooks")
    container = the_container(webhooks)
    app = typer.Typer()
    app.command()(main)
    options = typer.main.get_command(app).make_context("autoscale", container["command"][3:]).params
    assert list(options["queue"]) == [WEBHOOK_QUEUE]
    pool = WorkerPool(options["threads"], Path(options["metrics_dir"]), options["grace_s"], options["queue"])
    assert pool.command[-2:] == ["--queues", WEBHOOK_QUEUE], "a saga worker never holds a shop's delivery"
    assert container_port(container, "metrics") == options["metrics_port"]
    assert webhooks["spec"]["replicas"] >= 2, "deliveries go on while one pod restarts"
    assert options["grace_s"] < webhooks["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]


def test_the_reaper_runs_the_recovery_module_once_with_its_metrics_port() -> None:
    reaper = the("Deployment", "orderflow-reaper")
    container = the_container(reaper)
    assert reaper["spec"]["replicas"] == 1
    assert container["command"] == ["python", "-m", "workers.reaper"]
    source = (ROOT / "workers" / "reaper.py").read_text()
    assert "def main(" in source and 'if __name__ == "__main__":' in source
    (config_map,) = of_kind("ConfigMap")
    env = config_map["data"] | env_of(container)
    assert {"REAPER_METRICS_PORT", "METRICS_HOST"} <= SETTINGS_ENV
    assert container_port(container, "metrics") == int(env["REAPER_METRICS_PORT"])
    assert env["METRICS_HOST"] == "0.0.0.0", "on loopback, Prometheus could not scrape the reaper's pod"


def test_the_migration_job_calls_what_models_migrate_provides() -> None:
    container = the_container(the("Job", "orderflow-migrate"))
    assert container["command"][:2] == ["python", "-c"]
    code = ast.parse(container["command"][2])
    imported = [
        (node.module, alias.name) for node in ast.walk(code) if isinstance(node, ast.ImportFrom) for alias in node.names
    ]
    assert ("models.migrate", "upgrade") in imported
    for module, name in imported:
        assert module and hasattr(importlib.import_module(module), name), f"{module}.{name}"


def test_every_container_runs_the_one_image_as_the_images_non_root_user() -> None:
    images = {container["image"] for item in workloads() for container in containers(item)}
    assert len(images) == 1
    uid = int(dockerfile_user().split(":")[0])
    for item in workloads():
        context = item["spec"]["template"]["spec"]["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] == uid, item["metadata"]["name"]


def test_every_pod_runs_under_the_runtime_default_seccomp_profile_without_a_service_account_token() -> None:
    for item in workloads():
        spec = pod_spec(item)
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, item["metadata"]["name"]
        assert spec["automountServiceAccountToken"] is False, item["metadata"]["name"]


@pytest.mark.parametrize(
    ("name", "port"), [("orderflow-worker", 9191), ("orderflow-webhooks", 9193), ("orderflow-reaper", 9192)]
)
def test_the_workers_and_the_reaper_are_restarted_when_their_metrics_port_stops_answering(name: str, port: int) -> None:
    container = the_container(the("Deployment", name))
    probe = container["livenessProbe"]
    assert probe["httpGet"] == {"path": "/metrics", "port": "metrics"}
    assert container_port(container, "metrics") == port
    assert probe["initialDelaySeconds"] >= 5, "the process needs a moment to import and bind"
    assert probe["timeoutSeconds"] < probe["periodSeconds"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= 30, "a slow scrape or two must not restart the pod"
    assert "readinessProbe" not in container, "no Service sends them traffic"


def test_the_api_disruption_budget_keeps_one_of_its_replicas_and_selects_only_the_api_pods() -> None:
    budget, api = the("PodDisruptionBudget", "orderflow-api"), the("Deployment", "orderflow-api")
    selector = budget["spec"]["selector"]["matchLabels"]
    selected = [item["metadata"]["name"] for item in workloads() if selects(selector, pod_labels(item))]
    assert selected == ["orderflow-api"]
    assert budget["spec"]["minAvailable"] == 1 < api["spec"]["replicas"], "a budget of every replica blocks drains"


def test_applying_the_folder_creates_no_secret_and_the_template_outside_it_is_the_one_the_pods_read() -> None:
    assert of_kind("Secret") == [], "kubectl apply -f deploy/k8s/ would overwrite the real secrets"
    (secret,) = secret_templates()
    assert secret["kind"] == "Secret" and SECRET_TEMPLATE.parent != K8S
    referenced = {
        source["secretRef"]["name"]
        for item in workloads()
        for container in containers(item)
        for source in container.get("envFrom", [])
        if "secretRef" in source
    }
    assert referenced | {name for name, _ in trigger_auth_refs()} == {secret["metadata"]["name"]}


def test_every_config_reference_names_a_config_map_or_secret_that_exists() -> None:
    config_maps = {item["metadata"]["name"] for item in of_kind("ConfigMap")}
    secrets = {item["metadata"]["name"]: secret_keys(item) for item in secret_templates()}
    for item in workloads():
        for container in containers(item):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                else:
                    assert source["secretRef"]["name"] in secrets
    for secret, key in trigger_auth_refs():
        assert key in secrets[secret], f"{secret}/{key}"


def test_the_config_sets_only_settings_the_code_reads_and_the_secret_template_holds_the_secrets() -> None:
    (config_map,), (secret,) = of_kind("ConfigMap"), secret_templates()
    assert set(config_map["data"]) <= SETTINGS_ENV
    keda_keys = {key for _, key in trigger_auth_refs()}
    assert secret_keys(secret) <= SETTINGS_ENV | keda_keys
    assert {"DATABASE_URL", "REDIS_URL", "STRIPE_API_KEY", "JWT_SECRETS"} <= secret_keys(secret)
    template = secret["stringData"]
    assert isinstance(json.loads(template["JWT_SECRETS"]), list), "pydantic-settings reads a list as JSON"
    assert all("REPLACE_ME" in template[key] for key in ("STRIPE_API_KEY", "JWT_SECRETS", "DATABASE_URL"))


def test_keda_scales_the_worker_deployment_on_every_saga_queue_the_actors_use(saga_broker: RedisBroker) -> None:
    broker = saga_broker
    assert set(broker.get_declared_queues()) == {*SAGA_QUEUES, WEBHOOK_QUEUE}

    (scaled,) = of_kind("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    assert the("Deployment", target["name"])["metadata"]["name"] == "orderflow-worker"
    triggers = scaled["spec"]["triggers"]
    assert {trigger["type"] for trigger in triggers} == {"redis"}
    lists = [trigger["metadata"]["listName"] for trigger in triggers]
    assert sorted(lists) == sorted(f"{broker.namespace}:{queue}" for queue in SAGA_QUEUES), "webhooks: own pods"
    auths = {item["metadata"]["name"] for item in of_kind("TriggerAuthentication")}
    assert all(trigger["authenticationRef"]["name"] in auths for trigger in triggers)
    assert 1 <= scaled["spec"]["minReplicaCount"] <= scaled["spec"]["maxReplicaCount"]


# ---- Prometheus, alerts, runbook, dashboard ------------------------------------------------------------


def test_prometheus_scrapes_the_api_the_workers_the_webhook_workers_and_the_reaper_and_loads_the_alerts() -> None:
    (config,) = yaml_documents(DEPLOY / "prometheus.yml")
    assert config["rule_files"] == ["alerts.yml"]
    targets = {
        target for job in config["scrape_configs"] for static in job["static_configs"] for target in static["targets"]
    }
    procfile = (ROOT / "Procfile").read_text()
    worker_port = re.search(r"--metrics-port \$\{WORKER_METRICS_PORT:-(\d+)\}", procfile)
    webhook_port = re.search(r"--metrics-port \$\{WEBHOOK_METRICS_PORT:-(\d+)\}", procfile)
    assert worker_port and webhook_port, "the Procfile's worker and webhooks lines name their default metrics ports"
    # The API and the reaper serve their metrics on the port their settings name.
    api_port, reaper_port = (Settings.model_fields[f"{name}_metrics_port"].default for name in ("api", "reaper"))
    ports = {api_port, int(worker_port[1]), int(webhook_port[1]), reaper_port}
    assert targets == {f"127.0.0.1:{port}" for port in ports}


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert names and len(names) == len(set(names))


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_has_a_summary_and_a_runbook_url_whose_anchor_exists(rule: dict[str, Any]) -> None:
    annotations = rule["annotations"]
    assert annotations["summary"].strip()
    page, _, anchor = annotations["runbook_url"].partition("#")
    assert page.endswith("docs/runbook.md")
    assert anchor in anchors(RUNBOOK.read_text())
    assert rule["alert"] in runbook_sections(), "the runbook section is headed by the alert's name"


def test_every_runbook_link_within_the_page_resolves() -> None:
    text = RUNBOOK.read_text()
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert links and set(links) <= anchors(text)


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_section_points_at_dashboard_panels_that_exist(rule: dict[str, Any]) -> None:
    section = runbook_sections()[rule["alert"]]
    mention = re.search(r"\*\*Dashboard:\*\*(.*?)(?=\n- |\n\n|\Z)", section, flags=re.DOTALL)
    assert mention, "each section says where on the dashboard to look"
    panels = re.findall(r"(?<!\*)\*([^*\n]+)\*(?!\*)", mention.group(1))
    titles = {panel["title"] for panel in dashboard()["panels"]}
    assert panels and set(panels) <= titles


def test_the_runbook_uses_only_orderctl_commands_and_options_that_exist() -> None:
    from scripts.orderctl import app

    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    invocations = re.findall(r"`(orderctl [^`]+)`", RUNBOOK.read_text())
    used = set()
    for invocation in invocations:
        words = invocation.split()[1:]
        assert words[0] in commands, invocation
        command = commands[words[0]]
        if isinstance(getattr(command, "commands", None), dict):  # a group (typer 0.29 vendors its own click)
            assert words[1] in command.commands, invocation
            command = command.commands[words[1]]
        options = {option for parameter in command.params for option in parameter.opts}
        assert {word for word in words if word.startswith("--")} <= options, invocation
        used.add(words[0])
    assert {"stuck", "show", "stats", "audit", "retry", "compensate", "dlq"} <= used


def test_the_dashboard_is_importable_with_unique_ids_and_a_prometheus_datasource_variable() -> None:
    board = dashboard()
    assert board["schemaVersion"] >= 36 and board["uid"] and board["title"]
    (variable,) = [item for item in board["templating"]["list"] if item["name"] == "DS_PROMETHEUS"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [panel["id"] for panel in board["panels"]]
    assert all(isinstance(panel_id, int) for panel_id in ids) and len(ids) == len(set(ids))


def test_dashboard_panels_fit_the_grid_without_overlapping() -> None:
    boxes = [panel["gridPos"] for panel in dashboard()["panels"]]
    assert all(box["x"] >= 0 and box["y"] >= 0 and box["w"] > 0 and box["h"] > 0 for box in boxes)
    assert all(box["x"] + box["w"] <= 24 for box in boxes)
    for index, a in enumerate(boxes):
        for b in boxes[index + 1 :]:
            apart = a["x"] + a["w"] <= b["x"] or b["x"] + b["w"] <= a["x"] or a["y"] + a["h"] <= b["y"]
            assert apart or b["y"] + b["h"] <= a["y"], f"{a} overlaps {b}"


def test_every_dashboard_panel_queries_prometheus_through_the_variable() -> None:
    for panel in dashboard()["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert ref_ids and len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert metric_names(target["expr"]), f"{panel['title']}: {target['expr']}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]


# ---- every metric the dashboard and the alerts use is exported by the code --------------------------------


def test_metric_names_are_read_from_promql_but_not_from_label_values() -> None:
    promql = 'sum by (queue_name) (rate(dramatiq_messages_total{actor_name="orderflow_x"}[5m])) / orderflow_b'
    assert metric_names(promql) == {"dramatiq_messages_total", "orderflow_b"}


def test_a_metric_the_code_does_not_export_is_reported(exported: set[str]) -> None:
    assert "orderflow_step_duration_seconds_bucket" in exported
    assert unexported(["rate(orderflow_no_such_thing_total[5m])"], exported) == {"orderflow_no_such_thing_total"}


def test_the_exported_names_come_from_every_process(exported: set[str]) -> None:
    assert {
        "orderflow_orders_stalled",
        "orderflow_recovery_latency_seconds_count",
        "orderflow_orders_accepted_total",
        "orderflow_http_request_duration_seconds_bucket",
        "dramatiq_messages_total",
        "dramatiq_message_duration_milliseconds_bucket",
    } <= exported


def test_the_autoscaler_module_exports_the_queue_metrics() -> None:
    assert autoscaler_modules(), f"none of {AUTOSCALER_MODULES} exists yet"
    wanted = {
        "orderflow_queue_messages",
        "orderflow_queue_oldest_age_seconds",
        "orderflow_workers",
        "orderflow_autoscaler_decisions_total",
    }
    assert wanted <= autoscaler_series()


def test_every_metric_the_dashboard_uses_is_exported(exported: set[str]) -> None:
    queries = list(dashboard_queries(dashboard()))
    assert queries
    assert unexported(queries, exported) == set()


def test_a_label_a_series_does_not_have_is_reported(labels: dict[str, set[str]]) -> None:
    assert label_problems('sum by (step) (rate(orderflow_step_failures_total{code="X"}[5m]))', labels) == []
    assert label_problems("sum by (queue) (rate(dramatiq_messages_total[5m]))", labels) == [
        "dramatiq_messages_total has no label queue to group by"
    ]
    assert label_problems('orderflow_orders_finished_total{reason="x"}', labels) == [
        "orderflow_orders_finished_total has no label reason"
    ]


def test_every_label_the_dashboard_and_the_alerts_use_exists(labels: dict[str, set[str]]) -> None:
    expressions = [*dashboard_queries(dashboard()), *(rule["expr"] for rule in alert_rules())]
    assert [problem for expression in expressions for problem in label_problems(expression, labels)] == []


def test_every_metric_the_alerts_use_is_exported(exported: set[str]) -> None:
    expressions = [rule["expr"] for rule in alert_rules()]
    assert expressions
    assert unexported(expressions, exported) == set()


# ---- The docs name files that exist ----------------------------------------------------------------------
SOURCE_PATH = re.compile(r"(?<![\w./-])((?:api|pipeline|workers|models|scripts|tests|deploy|docs)/[\w/.-]*\w)")


@pytest.mark.parametrize("document", ["README.md", "docs/architecture.md", "docs/runbook.md"])
def test_every_source_path_a_document_names_exists(document: str) -> None:
    # `deploy/orderflow-reaper` and the like are kubectl's names for Deployments, not paths.
    named = {path for path in SOURCE_PATH.findall((ROOT / document).read_text()) if "/orderflow-" not in path}

    assert named, "the pattern no longer finds paths"
    assert sorted(path for path in named if not (ROOT / path).exists()) == []
