"""Every file in deploy/ is checked: it parses, images match the pins, entrypoints are real."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from jobs import cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
YAML_FILES = sorted(DEPLOY.rglob("*.yaml"))
KUBERAY = DEPLOY / "kuberay"
QUANTITY = re.compile(r"^\d+(\.\d+)?(m|Ki|Mi|Gi|Ti)?$")


PYPROJECT = (REPO / "pyproject.toml").read_text()  # regex, not tomllib: Python 3.10 lacks it


def pinned(package: str) -> str:
    match = re.search(rf'^\s*"{re.escape(package)}(\[[^\]]*\])?==([\w.]+)",', PYPROJECT, re.M)
    assert match, f"{package} is not pinned with == in pyproject.toml"
    return match.group(2)


RAY = pinned("ray")
MLFLOW = pinned("mlflow")
VERSION = re.search(r'^version = "([^"]+)"', PYPROJECT, re.M).group(1)
VAEPIPE_IMAGE = re.compile(rf"^vaepipe:{re.escape(VERSION)}-ray{re.escape(RAY)}-(cpu|gpu)$")


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def walk(node, key: str):
    """Every value stored under ``key`` anywhere in a parsed document."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item, key)


def containers(doc: dict) -> list[dict]:
    return [c for lst in walk(doc, "containers") for c in lst]


def test_deploy_has_the_promised_files():
    names = {p.relative_to(DEPLOY).as_posix() for p in DEPLOY.rglob("*") if p.is_file()}
    for expected in [
        "Dockerfile.cpu", "Dockerfile.gpu", "kuberay/raycluster.yaml",
        "kuberay/rayjob-train.yaml", "kuberay/rayjob-encode.yaml", "kuberay/rayservice.yaml",
        "mlflow/docker-compose.yaml", "mlflow/k8s/mlflow.yaml", "mlflow/k8s/postgres.yaml",
        "mlflow/k8s/minio.yaml", "local_stack.sh", "README.md",
    ]:  # fmt: skip
        assert expected in names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_yaml_parses_and_every_k8s_object_is_well_formed(path):
    parsed = docs(path)
    assert parsed, f"{path} is empty"
    if path.name == "docker-compose.yaml":
        return
    for doc in parsed:
        assert {"apiVersion", "kind", "metadata"} <= doc.keys(), doc
        assert doc["metadata"].get("name"), f"{path}: {doc['kind']} without a name"


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_dockerfiles_build_on_the_pinned_ray_image(variant):
    text = (DEPLOY / f"Dockerfile.{variant}").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.M)
    assert froms == [f"rayproject/ray:{RAY}-py311-{variant}"]
    assert re.search(r"pip install .*\s\.(\s|$)", text), "vaepipe itself must be installed"
    assert "vaepipe --help" in text, "the image build must smoke-test the CLI"
    ignore = (DEPLOY / f"Dockerfile.{variant}.dockerignore").read_text().split()
    assert "**" in ignore and "!pipeline/**" in ignore  # no .venv or local stores in context


def test_mlflow_image_pins_the_client_version():
    text = (DEPLOY / "mlflow" / "Dockerfile").read_text()
    assert f"mlflow=={MLFLOW}" in text
    for path in [DEPLOY / "mlflow" / "docker-compose.yaml", DEPLOY / "mlflow/k8s/mlflow.yaml"]:
        assert f"vaepipe-mlflow:{MLFLOW}" in path.read_text()


def kuberay_objects() -> list[dict]:
    return [d for p in sorted(KUBERAY.glob("*.yaml")) for d in docs(p)]


def cluster_specs() -> list[dict]:
    out = []
    for doc in kuberay_objects():
        if doc["kind"] == "RayCluster":
            out.append(doc["spec"])
        elif doc["kind"] == "RayJob":
            out.append(doc["spec"]["rayClusterSpec"])
        elif doc["kind"] == "RayService":
            out.append(doc["spec"]["rayClusterConfig"])
    return out


def test_kuberay_clusters_pin_ray_and_use_matching_images():
    specs = cluster_specs()
    assert len(specs) == 4
    for spec in specs:
        assert spec["rayVersion"] == RAY
        assert spec["authOptions"] == {"mode": "token"}  # never without token auth
        for container in containers(spec):
            assert VAEPIPE_IMAGE.match(container["image"]), container["image"]


def test_rayjobs_bring_the_same_cluster_as_raycluster_yaml():
    raycluster = docs(KUBERAY / "raycluster.yaml")[0]["spec"]
    for name in ["rayjob-train.yaml", "rayjob-encode.yaml"]:
        assert docs(KUBERAY / name)[0]["spec"]["rayClusterSpec"] == raycluster


def test_head_is_cpu_and_workers_are_a_gpu_group():
    for spec in cluster_specs():
        head = containers(spec["headGroupSpec"])
        assert all(c["image"].endswith("-cpu") for c in head)
        assert all("nvidia.com/gpu" not in c["resources"]["limits"] for c in head)
        gpu_groups = [g for g in spec["workerGroupSpecs"] if g["groupName"] == "gpu"]
        assert len(gpu_groups) == 1
        group = gpu_groups[0]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        for container in containers(group):
            assert container["image"].endswith("-gpu")
            assert int(container["resources"]["limits"]["nvidia.com/gpu"]) >= 1


def all_resources() -> list[tuple[str, dict]]:
    out = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "docker-compose.yaml":
            continue
        for doc in docs(path):
            for container in containers(doc):
                out.append((f"{path.name}:{container['name']}", container["resources"]))
    return out


@pytest.mark.parametrize("name_resources", all_resources(), ids=lambda nr: nr[0])
def test_resource_fields_are_sane(name_resources):
    name, resources = name_resources
    requests, limits = resources["requests"], resources["limits"]
    for field in ("cpu", "memory"):
        for section in (requests, limits):
            assert QUANTITY.match(str(section[field])), f"{name}: {field}={section[field]}"
        assert to_number(requests[field]) <= to_number(limits[field]), name
    if "nvidia.com/gpu" in limits:  # extended resources: requests must equal limits
        assert str(requests.get("nvidia.com/gpu")) == str(limits["nvidia.com/gpu"]), name


def to_number(quantity) -> float:
    text = str(quantity)
    scale = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    for suffix, factor in scale.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


def rayjobs() -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"] for d in kuberay_objects() if d["kind"] == "RayJob"}


def test_rayjobs_shut_down_and_are_bounded():
    jobs = rayjobs()
    assert set(jobs) == {"vaepipe-train", "vaepipe-encode"}
    for spec in jobs.values():
        assert spec["shutdownAfterJobFinishes"] is True
        assert spec["ttlSecondsAfterFinished"] >= 0
        assert spec["activeDeadlineSeconds"] > 0


@pytest.mark.parametrize("job", ["vaepipe-train", "vaepipe-encode"])
def test_rayjob_entrypoints_are_real_cli_commands_with_valid_flags(job):
    argv = shlex.split(rayjobs()[job]["entrypoint"])
    assert argv[0] == "vaepipe"
    command = argv[1]
    assert command in cli.COMMANDS
    assert job == f"vaepipe-{command}"
    module_name = cli.COMMANDS[command][0]
    if importlib.util.find_spec(module_name) is None:
        pytest.skip(f"{module_name} not implemented yet")
    parser = argparse.ArgumentParser(prog=f"vaepipe {command}", exit_on_error=False)
    importlib.import_module(module_name).add_arguments(parser)
    parser.parse_args(argv[2:])  # raises on an unknown flag or a missing required one


def test_train_job_checkpoints_to_shared_storage():
    argv = shlex.split(rayjobs()["vaepipe-train"]["entrypoint"])
    assert "tracking.storage_path=/mnt/vaepipe/checkpoints" in argv
    spec = rayjobs()["vaepipe-train"]
    mounts = [m["mountPath"] for lst in walk(spec, "volumeMounts") for m in lst]
    assert mounts and set(mounts) == {"/mnt/vaepipe"}  # head and every worker see the same path


def test_ray_pods_get_the_tracking_uri_from_a_configmap_and_credentials_from_a_secret():
    config = docs(KUBERAY / "vaepipe-config.yaml")
    configmap = next(d for d in config if d["kind"] == "ConfigMap")
    secret = next(d for d in config if d["kind"] == "Secret")
    assert configmap["data"]["MLFLOW_TRACKING_URI"].startswith("http://mlflow:")
    assert set(secret["stringData"]) == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
    for spec in cluster_specs():
        for container in containers(spec):
            env_from = container.get("envFrom", [])
            maps = [e["configMapRef"]["name"] for e in env_from if "configMapRef" in e]
            secrets = [e["secretRef"]["name"] for e in env_from if "secretRef" in e]
            assert configmap["metadata"]["name"] in maps
            assert secret["metadata"]["name"] in secrets


def test_mlflow_servers_require_authentication_without_a_default_password():
    compose = docs(DEPLOY / "mlflow" / "docker-compose.yaml")[0]["services"]["mlflow"]
    k8s = next(d for d in docs(DEPLOY / "mlflow/k8s/mlflow.yaml") if d["kind"] == "Deployment")
    (server,) = containers(k8s)
    for command, env in [
        (" ".join(compose["command"]), compose["environment"]),
        (" ".join(server["args"]), {e["name"]: e for e in server["env"]}),
    ]:
        assert "--app-name basic-auth" in command
        assert "auth_config.py" in command and "--allowed-hosts" in command
        assert "*" not in command.split("--allowed-hosts")[1].split()[0].replace(".*.", ".")
        password = env["MLFLOW_AUTH_ADMIN_PASSWORD"]
        # From the environment (compose: required, no fallback) or a Secret, never a literal.
        assert ":?" in str(password) or "secretKeyRef" in str(password)
    assert (DEPLOY / "mlflow" / "auth_config.py").is_file()
    assert "auth_config.py" in (DEPLOY / "mlflow" / "Dockerfile").read_text()


def test_compose_runs_mlflow_on_postgres_and_minio():
    compose = docs(DEPLOY / "mlflow" / "docker-compose.yaml")[0]
    services = compose["services"]
    assert set(services) == {"postgres", "minio", "mlflow"}
    command = " ".join(services["mlflow"]["command"])
    assert "postgresql://" in str(services["mlflow"]["environment"])
    assert "--artifacts-destination s3://" in command and "--serve-artifacts" in command
    for service in services.values():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), image
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{image} publishes {port} beyond loopback"


def test_mlflow_k8s_server_uses_the_database_and_the_bucket():
    objects = [d for p in sorted((DEPLOY / "mlflow" / "k8s").glob("*.yaml")) for d in docs(p)]
    kinds = {(d["kind"], d["metadata"]["name"]) for d in objects}
    assert ("Service", "mlflow") in kinds and ("Deployment", "mlflow") in kinds
    server = next(c for d in objects if d["kind"] == "Deployment" for c in containers(d))
    args = " ".join(server["args"])
    assert "postgresql://" in args and "@mlflow-postgres:5432/" in args
    assert "--artifacts-destination s3://" in args and "--allowed-hosts" in args
    secrets = {d["metadata"]["name"] for d in objects if d["kind"] == "Secret"}
    refs = {r["name"] for r in walk(objects, "secretKeyRef")}
    assert refs <= secrets


def test_local_stack_script_is_valid_bash_and_never_runs_ray_stop():
    script = DEPLOY / "local_stack.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    code = "\n".join(line for line in script.read_text().splitlines() if not line.startswith("#"))
    assert "ray stop" not in code
    assert "pipeline.cluster.local_stack" in code


def rayservice() -> dict:
    return docs(KUBERAY / "rayservice.yaml")[0]


def test_rayservice_runs_vaepipe_serve_on_the_raycluster_with_the_serve_port():
    spec = rayservice()["spec"]
    cluster = spec["rayClusterConfig"]
    raycluster = docs(KUBERAY / "raycluster.yaml")[0]["spec"]
    assert cluster["workerGroupSpecs"] == raycluster["workerGroupSpecs"]
    (head,) = containers(cluster["headGroupSpec"])
    (reference,) = containers(raycluster["headGroupSpec"])
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert ports.pop("serve") == 8000
    assert ports == {p["name"]: p["containerPort"] for p in reference["ports"]}
    assert {k: v for k, v in head.items() if k != "ports"} == {
        k: v for k, v in reference.items() if k != "ports"
    }


def test_rayservice_serve_config_builds_valid_serve_options():
    from pipeline.serving import app

    config = yaml.safe_load(rayservice()["spec"]["serveConfigV2"])
    assert config["http_options"]["port"] == 8000
    (application,) = config["applications"]
    module_name, attr = application["import_path"].split(":")
    assert getattr(importlib.import_module(module_name), attr) is app.app_builder
    opts = app.options_from_args(application["args"])  # raises on an unknown or bad arg
    assert opts.model.endswith("@champion") and opts.replicas is None  # autoscaled
    assert opts.max_replicas <= rayservice_gpu_max() or opts.gpus == 0


def rayservice_gpu_max() -> int:
    groups = rayservice()["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    return sum(g["maxReplicas"] for g in groups if g["groupName"] == "gpu")


def test_ingress_routes_to_the_service_kuberay_makes_for_serve():
    ingress = docs(KUBERAY / "rayservice.yaml")[1]
    assert ingress["kind"] == "Ingress"
    backends = list(walk(ingress, "service"))
    name = rayservice()["metadata"]["name"]
    assert backends == [{"name": f"{name}-serve-svc", "port": {"number": 8000}}]
