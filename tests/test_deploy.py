"""The deployment example (``deploy/``: compose file, nginx, Dockerfile) agrees with the CLI.

Its ``ws-notebook serve`` command is parsed by the real argument parser, every option it passes
is one ``ws-notebook serve --help`` lists, its environment variables are the ones the CLI reads,
and the ports and names the services use to reach each other match.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from ws_notebook import broker, cli

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
INTERPOLATION = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text("utf-8"))


@pytest.fixture(scope="module")
def serve_help() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ws_notebook", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _parsed(compose: dict, monkeypatch: pytest.MonkeyPatch):
    """The ws service's command as ``ws-notebook`` parses it, with the service's environment."""
    service = compose["services"]["ws"]
    for name, value in service["environment"].items():
        monkeypatch.setenv(name, INTERPOLATION.sub("token-from-the-shell", str(value)))
    command = service["command"]
    assert command[:2] == ["ws-notebook", "serve"], command
    return cli._parser().parse_args(command[1:])


def test_every_option_is_one_serve_has(compose: dict, serve_help: str) -> None:
    command = compose["services"]["ws"]["command"]
    options = [part for part in command if part.startswith("-")]
    assert options, command
    for option in options:
        assert re.search(rf"(^|[\s,\[]){re.escape(option)}\b", serve_help), option


def test_the_command_parses_and_joins_the_broker(
    compose: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _parsed(compose, monkeypatch)
    assert args.workers == 2
    assert args.broker  # --workers 2 needs one: here from the environment
    assert args.token == "token-from-the-shell"
    # The broker URL names the redis service, on the port it listens on.
    url = urlsplit(args.broker)
    assert url.scheme == "redis"
    assert url.hostname in compose["services"], url.hostname
    redis = compose["services"][url.hostname]
    redis_command = redis.get("command", [])
    redis_port = (
        int(redis_command[redis_command.index("--port") + 1]) if "--port" in redis_command else 6379
    )
    assert (url.port or 6379) == redis_port
    assert url.hostname in compose["services"]["ws"]["depends_on"]


def test_environment_names_are_the_ones_the_cli_reads(compose: dict) -> None:
    read = {cli.BROKER_ENV, cli.TOKEN_ENV}
    assert broker.BROKER_ENV == cli.BROKER_ENV
    environment = compose["services"]["ws"]["environment"]
    assert set(environment) <= read, set(environment) - read
    assert cli.BROKER_ENV in environment
    # ${NAME:?...} in a value is read from the shell running compose: the same names.
    for value in environment.values():
        for name in INTERPOLATION.findall(str(value)):
            assert name in read, name


def test_ports_and_paths_agree(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    args = _parsed(compose, monkeypatch)
    ws = compose["services"]["ws"]
    assert args.host == "0.0.0.0"  # reachable from the load balancer's container
    assert [str(args.port)] == [str(port) for port in ws["expose"]]
    assert f"127.0.0.1:{args.port}/healthz" in " ".join(ws["healthcheck"]["test"])
    assert ws["deploy"]["replicas"] == 2
    project = [volume.rsplit(":", 2) for volume in ws["volumes"]]
    assert [target for _, target, _ in project] == [args.directory]

    nginx = (DEPLOY / "nginx.conf").read_text("utf-8")
    upstreams = re.findall(r"^\s*server\s+(\S+?);", nginx, re.M)
    assert upstreams and set(upstreams) == {f"ws:{args.port}"}, upstreams
    listen = re.findall(r"^\s*listen\s+(\d+);", nginx, re.M)
    lb = compose["services"]["lb"]
    assert [port.rpartition(":")[2] for port in lb["ports"]] == listen
    conf = [volume.split(":")[:2] for volume in lb["volumes"]]
    assert ["./nginx.conf", "/etc/nginx/conf.d/default.conf"] in conf
    # WebSocket upgrades pass through; SockJS's HTTP fallbacks stick to one replica.
    assert nginx.count("proxy_set_header Upgrade $http_upgrade;") == 2
    sticky = re.search(r"upstream (\w+) \{\s*ip_hash;", nginx)
    assert sticky is not None
    assert re.search(rf"location /stomp/ \{{\s*proxy_pass http://{sticky[1]};", nginx)


def test_the_image_installs_redis_py_from_this_checkout(compose: dict) -> None:
    build = compose["services"]["ws"]["build"]
    context = (DEPLOY / build["context"]).resolve()
    assert context == ROOT
    dockerfile = (context / build["dockerfile"]).read_text("utf-8")
    for line in dockerfile.splitlines():
        if line.startswith("COPY "):
            for source in line.split()[1:-1]:
                assert (context / source).exists(), source
    assert '"/src[scale]"' in dockerfile
    pyproject = (ROOT / "pyproject.toml").read_text("utf-8")
    assert re.search(r'^scale = \["redis>=', pyproject, re.M)
