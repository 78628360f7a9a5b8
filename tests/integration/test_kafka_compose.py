"""docker-compose.yml, read with PyYAML (there is no Docker engine here): the services, their ports, health checks,
volumes and environment agree with each other and with the code that reads them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from adapters.kafka import KafkaConfig
from services.entrypoints.cli.main import build_parser
from services.entrypoints.cli.kafka import register

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"
HANDOFF_SERVICES = ("api", "ingest", "route")
VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def with_defaults(text: str) -> str:
    """A compose value as it is with no override in the environment: ${VAR:-default} -> default."""
    return VARIABLE.sub(lambda m: m.group(2) or "", text)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env(service: dict) -> dict[str, str]:
    return {key: with_defaults(str(value)) for key, value in service["environment"].items()}


def test_every_part_is_there(services):
    assert {"kafka", "postgres", "api", "ingest", "route"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("kafka", "postgres", *HANDOFF_SERVICES):
        assert "healthcheck" in services[name], name
        assert services[name]["healthcheck"]["test"], name


def test_kafka_runs_kraft_with_an_internal_listener_the_services_use(services):
    kafka = env(services["kafka"])
    assert set(kafka["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert kafka["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{kafka['KAFKA_NODE_ID']}@kafka:9093"
    listeners = dict(item.split("://") for item in kafka["KAFKA_ADVERTISED_LISTENERS"].split(","))
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols) and "CONTROLLER" in protocols
    assert kafka["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"  # the workers create topics with their partitions
    for name in HANDOFF_SERVICES:
        assert env(services[name])["HANDOFF_KAFKA_BOOTSTRAP"] == listeners["INTERNAL"], name
    assert "9094:9094" in services["kafka"]["ports"]  # the external listener, for agencies
    assert any(volume.endswith(":" + kafka["KAFKA_LOG_DIRS"]) for volume in services["kafka"]["volumes"])


def test_the_database_url_points_at_the_postgres_service(services):
    postgres = env(services["postgres"])
    for name in HANDOFF_SERVICES:
        url = env(services[name])["HANDOFF_DATABASE_URL"]
        assert url.startswith(f"postgresql://{postgres['POSTGRES_USER']}:{postgres['POSTGRES_PASSWORD']}@postgres:5432/"
                              f"{postgres['POSTGRES_DB']}"), name
    assert any(volume.startswith("pg-data:") for volume in services["postgres"]["volumes"])


def test_api_workers_and_router(services):
    assert "8000:8000" in services["api"]["ports"]
    assert services["api"]["command"][:2] == ["handoff", "serve"]
    assert services["ingest"]["command"] == ["handoff", "ingest"]
    assert services["ingest"]["deploy"]["replicas"] >= 2
    assert services["route"]["command"] == ["handoff", "route"]
    assert services["route"]["deploy"]["replicas"] == 1
    for name in ("ingest", "route"):
        assert services[name]["stop_signal"] == "SIGTERM"  # graceful: the batch in hand is stored
        assert services[name]["depends_on"]["api"]["condition"] == "service_healthy"  # tables exist first
    # The commands exist (cli/main.py's own, and the two registered from cli/kafka.py).
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    if "ingest" not in commands:
        register(parser._subparsers._group_actions[0], lambda c: None)
    parser.parse_args(["serve", "--host", "0.0.0.0", "--port", "8000"])
    parser.parse_args(["ingest"])
    parser.parse_args(["route"])


def test_kafka_tls_and_sasl_pass_through_the_environment_to_a_valid_configuration(services):
    for name in HANDOFF_SERVICES:
        variables = env(services[name])
        for key in ("HANDOFF_KAFKA_SECURITY_PROTOCOL", "HANDOFF_KAFKA_SASL_MECHANISM", "HANDOFF_KAFKA_SASL_USERNAME",
                    "HANDOFF_KAFKA_SASL_PASSWORD", "HANDOFF_KAFKA_SSL_CAFILE", "HANDOFF_KAFKA_SSL_CERTFILE",
                    "HANDOFF_KAFKA_SSL_KEYFILE"):
            assert key in variables, (name, key)
        # As given, with no overrides: a configuration the code accepts.
        config = KafkaConfig.from_env(variables)
        assert config is not None and config.security_protocol == "PLAINTEXT"
        # With SASL_SSL overrides, the same keys make a SASL_SSL client configuration.
        secured = KafkaConfig.from_env({**variables, "HANDOFF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                        "HANDOFF_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                                        "HANDOFF_KAFKA_SASL_USERNAME": "handoff", "HANDOFF_KAFKA_SASL_PASSWORD": "x",
                                        "HANDOFF_KAFKA_SSL_CAFILE": "/etc/handoff/kafka/ca.pem"})
        assert secured.client_settings()["sasl_mechanism"] == "SCRAM-SHA-512"
    # Secrets are never written into the file: only ${...} references.
    for name in HANDOFF_SERVICES:
        raw = services[name]["environment"]
        for key in ("HANDOFF_KAFKA_SASL_PASSWORD", "HANDOFF_KAFKA_SSL_PASSWORD", "HANDOFF_CIPHER_KEY"):
            assert str(raw[key]).startswith("${"), key


def test_the_image_installs_the_package_and_workers_report_liveness(compose, services):
    dockerfile = services["api"]["build"]["dockerfile_inline"]
    assert "pip install" in dockerfile
    for package in ("domain", "adapters", "projections", "services"):
        assert f"COPY {package} " in dockerfile
    for name in ("ingest", "route"):
        heartbeat = env(services[name])["HANDOFF_HEARTBEAT_FILE"]
        assert heartbeat in " ".join(services[name]["healthcheck"]["test"])
    assert {"kafka-data", "pg-data"} <= set(compose["volumes"])
