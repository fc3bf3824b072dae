"""docker-compose.yaml stays consistent with the local stack, the streams file and the pins.

Static checks only (no Docker needed): the compose file is parsed with ``yaml.safe_load``
and compared with ``tools.stack.stack_environment()``, ``include/streams.yml``,
``requirements.txt``, ``docker/Dockerfile`` and the repository tree.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from firehose_loader.config import load_config
from tools.stack import stack_environment

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
REQUIREMENTS = REPO / "requirements.txt"
STREAMS_FILE = REPO / "include" / "streams.yml"

AIRFLOW_SERVICES = (
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
)
LONG_RUNNING_AIRFLOW_SERVICES = AIRFLOW_SERVICES[1:]
SERVICES = ("postgres", "moto", "bucket-init", *AIRFLOW_SERVICES)
CONTAINER_MOUNTS = {"dags": "/opt/airflow/dags", "plugins": "/opt/airflow/plugins", "include": "/opt/airflow/include"}
# Stack variables whose value names a place (host path, host port); everything else must be equal.
LOCATION_DEPENDENT = {
    "AIRFLOW_HOME",
    "AIRFLOW__CORE__DAGS_FOLDER",
    "AIRFLOW__CORE__PLUGINS_FOLDER",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AWS_ENDPOINT_URL",
    "WAREHOUSE_URL",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def stack_env() -> dict[str, str]:
    return stack_environment()


@pytest.fixture(scope="module")
def streams_config():
    # The file the compose file mounts at /opt/airflow/include, not whatever $STREAMS_CONFIG says.
    return load_config(STREAMS_FILE)


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or as a list."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, None) for item in raw)
    return {name: None if value is None else str(value) for name, value in raw.items()}


def bind_mounts(service: dict) -> dict[str, str]:
    """Container path -> host path (relative to the repo) of a service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts[volume["target"]] = volume["source"]
            continue
        source, target, *_ = volume.split(":")
        if source.startswith((".", "/")):
            mounts[target] = source
    return mounts


def image_tag(image: str, repository: str) -> str:
    name, _, tag = image.rpartition(":")
    assert name == repository, f"expected an image of {repository}, got {image!r}"
    return tag


def pinned(package: str) -> str:
    match = re.search(rf"^{re.escape(package)}==(\S+)$", REQUIREMENTS.read_text(encoding="utf-8"), re.MULTILINE)
    assert match, f"{package} is not pinned in requirements.txt"
    return match.group(1)


def airflow_conn_names(env: dict) -> set[str]:
    return {name for name in env if name.startswith("AIRFLOW_CONN_")}


def test_services_exist(services):
    missing = set(SERVICES) - set(services)
    assert not missing, f"docker-compose.yaml lacks services {sorted(missing)}"


def test_airflow_services_share_the_built_image_and_the_local_executor(services):
    for name in AIRFLOW_SERVICES:
        service = services[name]
        assert service.get("build", {}).get("dockerfile") == "docker/Dockerfile", name
        assert (REPO / service["build"].get("context", ".") / service["build"]["dockerfile"]).is_file(), name
        assert environment(service).get("AIRFLOW__CORE__EXECUTOR") == "LocalExecutor", name
    commands = {name: str(services[name].get("command")) for name in LONG_RUNNING_AIRFLOW_SERVICES}
    assert commands == {
        "airflow-apiserver": "api-server",
        "airflow-scheduler": "scheduler",
        "airflow-dag-processor": "dag-processor",
        "airflow-triggerer": "triggerer",
    }
    assert "airflow db migrate" in "\n".join(services["airflow-init"]["command"])


def test_long_running_airflow_services_wait_for_init(services):
    for name in LONG_RUNNING_AIRFLOW_SERVICES:
        depends_on = services[name].get("depends_on", {})
        assert depends_on.get("airflow-init", {}).get("condition") == "service_completed_successfully", name
        assert depends_on.get("postgres", {}).get("condition") == "service_healthy", name


def test_every_airflow_service_mounts_dags_plugins_and_include(services):
    for name in AIRFLOW_SERVICES:
        mounts = bind_mounts(services[name])
        for folder, target in CONTAINER_MOUNTS.items():
            assert target in mounts, f"{name} does not mount anything at {target}"
            assert (REPO / mounts[target]).resolve() == REPO / folder, (
                f"{name} mounts {mounts[target]!r} at {target}, expected ./{folder}"
            )
        env = environment(services[name])
        assert env.get("AIRFLOW__CORE__DAGS_FOLDER") == CONTAINER_MOUNTS["dags"], name
        assert env.get("AIRFLOW__CORE__PLUGINS_FOLDER") == CONTAINER_MOUNTS["plugins"], name
        # firehose_loader.config falls back to <plugins>/../include/streams.yml; both must agree.
        streams_config_path = env.get("STREAMS_CONFIG")
        assert streams_config_path == f"{CONTAINER_MOUNTS['include']}/{STREAMS_FILE.name}", name


def test_mounted_host_paths_exist(services):
    for name, service in services.items():
        for target, source in bind_mounts(service).items():
            assert (REPO / source).exists(), f"{name} mounts {source!r} at {target}, which is not in the repository"


def test_conn_names_equal_the_local_stack_and_the_streams_settings(services, stack_env, streams_config):
    settings = streams_config.settings
    expected = {f"AIRFLOW_CONN_{conn_id.upper()}" for conn_id in (settings.aws_conn_id, settings.warehouse_conn_id)}
    assert airflow_conn_names(stack_env) == expected, "tools/stack.py and include/streams.yml disagree"
    for name in AIRFLOW_SERVICES:
        assert airflow_conn_names(environment(services[name])) == expected, name


def test_airflow_environment_matches_the_local_stack(services, stack_env):
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        missing = set(stack_env) - set(env)
        assert not missing, f"{name} lacks {sorted(missing)}, which tools/stack.py sets"
        for variable, value in stack_env.items():
            if variable in LOCATION_DEPENDENT or variable.startswith("AIRFLOW_CONN_"):
                continue
            assert env[variable] == value, f"{name}: {variable}={env[variable]!r}, the local stack has {value!r}"


def test_connections_point_at_the_compose_services(services, stack_env, streams_config):
    settings = streams_config.settings
    aws_variable = f"AIRFLOW_CONN_{settings.aws_conn_id.upper()}"
    warehouse_variable = f"AIRFLOW_CONN_{settings.warehouse_conn_id.upper()}"
    local_aws = json.loads(stack_env[aws_variable])
    local_warehouse = json.loads(stack_env[warehouse_variable])
    for name in AIRFLOW_SERVICES:
        env = environment(services[name])
        aws = json.loads(env[aws_variable])
        assert aws["conn_type"] == local_aws["conn_type"], name
        endpoint = urlsplit(aws["extra"]["endpoint_url"])
        assert (endpoint.hostname, endpoint.port) == ("moto", 5000), name
        assert aws["extra"]["endpoint_url"] == env["AWS_ENDPOINT_URL"], name
        assert aws["extra"].get("region_name") == local_aws["extra"].get("region_name"), name

        warehouse = json.loads(env[warehouse_variable])
        assert warehouse["conn_type"] == local_warehouse["conn_type"], name
        assert (warehouse["host"], warehouse["port"]) == ("postgres", 5432), name
        assert warehouse["schema"] == local_warehouse["schema"], name
        assert warehouse["login"] == environment(services["postgres"])["POSTGRES_USER"], name
        assert warehouse.get("password") == environment(services["postgres"]).get("POSTGRES_PASSWORD"), name

        metadata = urlsplit(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        local_metadata = urlsplit(stack_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
        assert metadata.scheme == local_metadata.scheme, name
        assert (metadata.hostname, metadata.port, metadata.path) == ("postgres", 5432, local_metadata.path), name

        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name


def test_postgres_creates_the_metadata_and_warehouse_databases(services, stack_env, streams_config):
    postgres = services["postgres"]
    assert image_tag(postgres["image"], "postgres") == "16"
    assert "healthcheck" in postgres
    init_sql = bind_mounts(postgres)
    init_scripts = [source for target, source in init_sql.items() if target.startswith("/docker-entrypoint-initdb.d/")]
    assert init_scripts == ["./docker/postgres-init.sql"]
    created = set(re.findall(r"CREATE\s+DATABASE\s+\"?(\w+)\"?", (REPO / init_scripts[0]).read_text(), re.IGNORECASE))
    created.add(environment(postgres)["POSTGRES_DB"])
    wanted = {
        urlsplit(stack_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]).path.lstrip("/"),
        json.loads(stack_env[f"AIRFLOW_CONN_{streams_config.settings.warehouse_conn_id.upper()}"])["schema"],
    }
    assert created == wanted


def test_bucket_init_creates_every_stream_bucket(services, streams_config):
    bucket_init = services["bucket-init"]
    assert bucket_init.get("depends_on", {}).get("moto", {}).get("condition") == "service_healthy"
    env = environment(bucket_init)
    script = "\n".join(bucket_init["command"]) if isinstance(bucket_init["command"], list) else bucket_init["command"]
    assert "s3 mb" in script, "bucket-init no longer runs `aws s3 mb`"
    assert re.search(r"for bucket in \$\$\{BUCKETS\}", script), "bucket-init no longer loops over $BUCKETS"
    assert env["AWS_ENDPOINT_URL"] == "http://moto:5000"
    buckets = {stream.bucket for stream in streams_config.streams}
    missing = buckets - set(env["BUCKETS"].split())
    assert not missing, f"bucket-init does not create {sorted(missing)} (add them to its BUCKETS)"


def test_moto_image_matches_the_pinned_moto(services):
    moto = services["moto"]
    assert image_tag(moto["image"], "motoserver/moto") == pinned("moto")
    assert any(str(port).endswith(":5000") for port in moto.get("ports", []))
    assert "healthcheck" in moto


def test_dockerfile_airflow_version_matches_requirements():
    base = re.search(r"^FROM\s+(\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert base, "docker/Dockerfile has no FROM line"
    tag = image_tag(base.group(1), "apache/airflow")
    match = re.fullmatch(r"(?P<airflow>[\d.]+)-python(?P<python>[\d.]+)", tag)
    assert match, f"unexpected apache/airflow tag {tag!r}"
    assert match["airflow"] == pinned("apache-airflow")
    compiled_for = re.search(r"--python-version (\S+)", REQUIREMENTS.read_text(encoding="utf-8"))
    assert compiled_for, "requirements.txt does not record the Python it was compiled for"
    assert match["python"] == compiled_for.group(1)


def test_dockerfile_copies_only_what_the_build_context_keeps():
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    kept = {line[1:] for line in ignored if line.startswith("!")}
    sources = re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s+\S+$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE)
    assert sources, "docker/Dockerfile copies nothing"
    for source in sources:
        assert (REPO / source).exists(), source
        assert "*" not in ignored or source in kept, f"{source} is excluded from the build context by .dockerignore"


def test_postgres_runs_with_the_local_stack_settings(compose: dict) -> None:
    from tools.stack import PG_SETTINGS

    command = compose["services"]["postgres"]["command"]
    assert command[0] == "postgres"
    assert command[1:] == PG_SETTINGS.split()
