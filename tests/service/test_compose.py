"""docker-compose.yml and the Dockerfile, checked without a Docker engine.

What a user relies on when running `docker compose up`: PostgreSQL is ready before the schema
is migrated, the app starts only on a migrated schema, it reaches the compose PostgreSQL through
PgBouncer in transaction-pooling mode with a valid production configuration, reports read a
streaming standby of that PostgreSQL, its health check really tells ready from unavailable, and
the image serves exactly as `registry serve` does. (The same three tiers run for real, from
PostgreSQL's and PgBouncer's own binaries, in tests/cluster/.)
"""

import json
import re
import shlex
import signal
import subprocess
import sys
import threading

import psycopg.conninfo
import pytest
import yaml
from werkzeug.serving import make_server

from registry import create_app, serving
from registry.config import Settings
from registry.problems import PROBLEM_TYPE_BASE, PROBLEM_TYPES
from tests.conftest import ROOT, make_settings

UNREACHABLE_DATABASE = "postgresql://postgres@127.0.0.1:1/registry"  # port 1 refuses at once


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text()
    logical, pending = [], ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line.strip())
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def instructions(dockerfile, name: str) -> list[str]:
    return [arguments for instruction, arguments in dockerfile if instruction == name]


def image_environment(dockerfile) -> dict:
    environment = {}
    for arguments in instructions(dockerfile, "ENV"):
        environment.update(pair.split("=", 1) for pair in shlex.split(arguments))
    return environment


def words(command) -> list[str]:
    """A compose command or healthcheck test as a list of words, in either of its forms."""
    return shlex.split(command) if isinstance(command, str) else list(command)


def interpolate(value: str, environ: dict) -> str:
    """Resolve ${VAR}, ${VAR:-default} and ${VAR:?error} as compose does."""

    def resolve(match):
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if environ.get(name):
            return environ[name]
        if operator == ":?":
            raise LookupError(f"{name}: {argument}")
        return argument or ""

    return re.sub(r"\$\{(\w+)(?:(:\?|:-)([^}]*))?\}", resolve, value)


def service_environment(service: dict, environ: dict) -> dict:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {name: interpolate(str(value), environ) for name, value in environment.items()}


def condition(service: dict, dependency: str) -> str | None:
    depends_on = service.get("depends_on") or {}
    return depends_on.get(dependency, {}).get("condition") if isinstance(depends_on, dict) else None


SECRET = {"REGISTRY_SECRET": "compose-test-secret-0123456789"}


# --- the services ----------------------------------------------------------------------------

def test_compose_runs_postgres_its_standby_pgbouncer_a_migration_and_the_app_behind_its_proxy(services):
    assert set(services) == {"postgres", "postgres-standby", "pgbouncer", "migrate", "app", "report-maintainer",
                             "proxy"}


def test_the_report_maintainer_runs_beside_the_app_on_the_migrated_schema_through_pgbouncer(services):
    maintainer, app = services["report-maintainer"], services["app"]
    assert words(maintainer["command"]) == ["registry", "maintain-reports"]
    assert maintainer.get("image") == app.get("image") and maintainer.get("build") == "."
    assert condition(maintainer, "migrate") == "service_completed_successfully"
    assert condition(maintainer, "pgbouncer") == "service_healthy"
    assert maintainer.get("restart") == "unless-stopped", "a maintainer that lost its database comes back"
    settings = Settings.from_environment(service_environment(maintainer, SECRET))
    assert settings.environment == "production"
    assert connection(settings.database_url) == connection(service_environment(app, SECRET)["DATABASE_URL"])
    assert "ports" not in maintainer and "expose" not in maintainer


def test_postgres_is_version_15_with_its_data_on_a_named_volume(compose, services):
    postgres = services["postgres"]
    assert postgres["image"].split(":")[1].startswith("15")
    mounts = [mount.split(":") for mount in postgres["volumes"]]
    data = [source for source, target, *_ in mounts if target == "/var/lib/postgresql/data"]
    assert data and data[0] in compose["volumes"], "the database must outlive its container"


def test_postgres_is_healthy_only_once_it_accepts_tcp_connections(services):
    # The image's first start runs a temporary server on the Unix socket only; a check over
    # the socket would let the migration connect (over TCP) too early and fail.
    test = words(services["postgres"]["healthcheck"]["test"])
    assert test[0] in ("CMD", "CMD-SHELL")
    command = shlex.split(" ".join(test[1:]))
    assert command[0] == "pg_isready"
    assert "-h" in command or "--host" in command


def test_migrate_runs_registry_db_upgrade_once_postgres_is_healthy(services):
    migrate = services["migrate"]
    assert words(migrate["command"]) == ["registry", "db", "upgrade"]
    assert condition(migrate, "postgres") == "service_healthy"
    assert migrate.get("restart", "no") == "no", "a one-shot job must not be restarted"


def test_app_starts_only_after_the_migration_succeeded_and_pgbouncer_is_healthy(services):
    app = services["app"]
    assert condition(app, "migrate") == "service_completed_successfully"
    assert condition(app, "pgbouncer") == "service_healthy"
    assert condition(services["pgbouncer"], "postgres") == "service_healthy"


def test_migrate_and_app_run_the_same_image(services):
    migrate, app = services["migrate"], services["app"]
    assert migrate.get("image") == app.get("image")
    assert migrate.get("build") == app.get("build") == "."


# --- configuration ---------------------------------------------------------------------------

def connection(url: str) -> dict:
    params = psycopg.conninfo.conninfo_to_dict(url)
    return {"host": params["host"], "port": int(params.get("port", 5432)), "user": params["user"],
            "password": params.get("password"), "dbname": params["dbname"]}


def postgres_login(services) -> dict:
    postgres = services["postgres"]["environment"]
    return {"user": postgres["POSTGRES_USER"], "password": postgres["POSTGRES_PASSWORD"],
            "dbname": postgres["POSTGRES_DB"]}


def test_migrate_reaches_the_compose_postgres_directly(services):
    # DDL and one-off commands on a session of their own, not through the transaction pooler
    params = connection(service_environment(services["migrate"], SECRET)["DATABASE_URL"])
    assert params == {"host": "postgres", "port": 5432, **postgres_login(services)}


def test_app_reaches_the_compose_postgres_through_pgbouncer(services):
    app = connection(service_environment(services["app"], SECRET)["DATABASE_URL"])
    pooled = connection(service_environment(services["pgbouncer"], {})["DATABASE_URL"])
    assert (app["host"], app["port"]) == ("pgbouncer", 5432)
    assert str(app["port"]) in [str(port) for port in services["pgbouncer"]["expose"]]
    assert {key: app[key] for key in ("user", "password", "dbname")} == postgres_login(services)
    assert pooled == {"host": "postgres", "port": 5432, **postgres_login(services)}


def test_pgbouncer_pools_by_transaction_from_a_pinned_image(services):
    pgbouncer = services["pgbouncer"]
    name, _, tag = pgbouncer["image"].partition(":")
    assert name == "edoburu/pgbouncer" and re.fullmatch(r"\d+\.\d+\.\d+", tag), "pinned to a PgBouncer version"
    environment = service_environment(pgbouncer, {})
    assert environment["POOL_MODE"] == "transaction"
    # PostgreSQL 15 stores passwords as SCRAM: PgBouncer must speak it to both sides
    assert environment["AUTH_TYPE"] == "scram-sha-256"
    test = words(pgbouncer["healthcheck"]["test"])
    assert test[1] == "pg_isready" and "-h" in test
    assert pgbouncer.get("restart") == "unless-stopped"
    assert "ports" not in pgbouncer, "reached by the app inside the compose network only"


def test_the_app_prepares_statements_only_where_pgbouncer_can_carry_them(services):
    """Prepared statements through a transaction pooler need PgBouncer 1.21+ with
    max_prepared_statements; otherwise a statement prepared on one server connection is run on
    another ("prepared statement does not exist")."""
    version = tuple(int(part) for part in services["pgbouncer"]["image"].partition(":")[2].split("."))
    carried = version >= (1, 21) and int(service_environment(services["pgbouncer"], {}).get(
        "MAX_PREPARED_STATEMENTS", "0")) > 0
    settings = Settings.from_environment(service_environment(services["app"], SECRET))
    assert carried or settings.prepare_threshold is None


def test_reports_read_a_streaming_standby_of_the_compose_postgres(services):
    settings = Settings.from_environment(service_environment(services["app"], SECRET))
    reports = connection(settings.reports_database_url)
    assert (reports["host"], reports["port"]) == ("postgres-standby", 5432)
    assert {key: reports[key] for key in ("user", "password", "dbname")} == postgres_login(services)
    assert 0 < settings.reports_max_lag_seconds <= 300
    # the app does not wait for the standby: without it, reports read the primary
    assert condition(services["app"], "postgres-standby") is None


def test_the_standby_is_a_base_backup_of_the_primary_set_up_to_stream(compose, services):
    standby, postgres = services["postgres-standby"], services["postgres"]
    assert standby["image"] == postgres["image"], "a standby runs the primary's major version"
    assert condition(standby, "postgres") == "service_healthy"
    shell, flag, script = words(standby["command"])
    assert (shell, flag) == ("bash", "-c")
    script = script.replace("\\\n", " ")  # continuation lines joined
    (backup,) = [shlex.split(line) for line in script.splitlines() if line.strip().startswith("pg_basebackup")]
    assert "--host=postgres" in backup and f"--username={postgres_login(services)['user']}" in backup
    assert "--write-recovery-conf" in backup and "--wal-method=stream" in backup
    environment = service_environment(standby, {})
    assert environment["PGPASSWORD"] == postgres_login(services)["password"]
    # only when the data directory is empty: a restarted standby resumes streaming
    assert 'if [ ! -s "$$PGDATA/PG_VERSION" ]' in script
    mounts = [mount.split(":") for mount in standby["volumes"]]
    (volume,) = [source for source, target, *_ in mounts if environment["PGDATA"].startswith(target + "/")]
    assert volume in compose["volumes"] and volume not in [m.split(":")[0] for m in postgres["volumes"]]
    assert standby["user"] == "postgres", "pg_basebackup and postgres run as the image's postgres user"


def test_the_primary_admits_the_standby_for_replication(compose, services):
    (mount,) = services["postgres"]["configs"]
    assert mount["target"].startswith("/docker-entrypoint-initdb.d/") and mount["target"].endswith(".sh")
    script = compose["configs"][mount["source"]]["content"]
    (line,) = [line for line in script.splitlines() if "pg_hba.conf" in line]
    hba = shlex.split(line)[1].split()
    assert hba[:3] == ["host", "replication", postgres_login(services)["user"]]
    assert hba[-1] == "scram-sha-256"


@pytest.mark.parametrize("name", ["migrate", "app"])
def test_service_environment_is_a_valid_production_configuration(services, name):
    settings = Settings.from_environment(service_environment(services[name], SECRET))
    assert settings.environment == "production"
    assert settings.registry_secret == SECRET["REGISTRY_SECRET"].encode()


@pytest.mark.parametrize("name", ["migrate", "app", "report-maintainer"])
def test_compose_refuses_to_start_without_a_registry_secret(services, name):
    with pytest.raises(LookupError, match="REGISTRY_SECRET"):
        service_environment(services[name], {})


def test_metrics_directory_is_fresh_at_each_start_and_exists_in_the_image(services, dockerfile):
    directory = service_environment(services["app"], SECRET)["PROMETHEUS_MULTIPROC_DIR"]
    # a tmpfs starts empty, so counters of a previous start's workers are not summed in
    assert directory in [mount.split(":")[0] for mount in services["app"].get("tmpfs", [])]
    # and `docker run` without compose still finds it
    assert any(directory in arguments for arguments in instructions(dockerfile, "RUN"))


def test_the_proxy_passes_requests_to_the_port_gunicorn_listens_on(services, dockerfile, nginx):
    bind = {**image_environment(dockerfile), **service_environment(services["app"], SECRET)}["REGISTRY_BIND"]
    host, port = bind.rsplit(":", 1)
    assert host == "0.0.0.0", "inside a container, 127.0.0.1 is unreachable from other containers"
    assert port in [str(exposed) for exposed in services["app"]["expose"]]
    assert port in " ".join(instructions(dockerfile, "EXPOSE")).split()
    (upstream,) = nginx.blocks("upstream")
    assert upstream.values("server") == [[f"app:{port}"]]
    (location,) = [block for block in nginx.blocks("location") if block.args == ["/"]]
    assert location.values("proxy_pass") == [[f"http://{upstream.args[0]}"]]


# --- the reverse proxy -----------------------------------------------------------------------

class NginxBlock:
    """A block of nginx configuration: its directives (name, arguments) and nested blocks."""

    def __init__(self, name: str = "", args: list | None = None):
        self.name, self.args = name, args or []
        self.directives: list[tuple[str, list[str]]] = []
        self.children: list["NginxBlock"] = []

    def values(self, name: str) -> list[list[str]]:
        return [args for directive, args in self.directives if directive == name]

    def blocks(self, name: str) -> list["NginxBlock"]:
        """Every block of that name, at any depth."""
        found = [child for child in self.children if child.name == name]
        return found + [block for child in self.children for block in child.blocks(name)]


def parse_nginx(text: str) -> NginxBlock:
    """nginx's syntax: words and quoted strings, `;` ends a directive, `{ }` a block, `#` a comment."""
    tokens = re.findall(r"#[^\n]*|'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[{};]|[^\s{};]+", text)
    stack, words = [NginxBlock()], []
    for token in tokens:
        if token.startswith("#"):
            continue
        if token in (";", "{"):
            name, *args = words
            if token == ";":
                stack[-1].directives.append((name, args))
            else:
                stack.append(NginxBlock(name, args))
                stack[-2].children.append(stack[-1])
            words = []
        elif token == "}":
            stack.pop()
        else:
            words.append(token[1:-1] if token[0] in "'\"" else token)
    assert len(stack) == 1 and not words, "unbalanced nginx configuration"
    return stack[0]


@pytest.fixture(scope="module")
def proxy(services) -> dict:
    return services["proxy"]


@pytest.fixture(scope="module")
def nginx(proxy) -> NginxBlock:
    (source,) = [mount.split(":")[0] for mount in proxy["volumes"] if mount.split(":")[1] == "/etc/nginx/nginx.conf"]
    return parse_nginx((ROOT / source).read_text())


def test_the_proxy_is_nginx_from_a_debian_image_with_the_repositorys_configuration(proxy):
    name, _, tag = proxy["image"].partition(":")
    assert name == "nginx" and "bookworm" in tag, "pinned, Debian-based"
    (mount,) = [mount for mount in proxy["volumes"] if mount.split(":")[1] == "/etc/nginx/nginx.conf"]
    source, _target, mode = mount.split(":")
    assert (ROOT / source).is_file() and mode == "ro"


def test_only_the_proxy_is_published_on_loopback(services, proxy, nginx):
    assert "ports" not in services["app"], "gunicorn must not be reachable around the proxy"
    (mapping,) = proxy["ports"]
    host, published, target = str(mapping).split(":")
    assert (host, published) == ("127.0.0.1", "8000")
    (server,) = nginx.blocks("server")
    assert server.values("listen") == [[target]]


def test_the_proxy_starts_once_the_app_is_healthy(proxy):
    assert condition(proxy, "app") == "service_healthy"
    assert proxy.get("restart") == "unless-stopped"


def test_the_proxy_receives_whole_requests_before_passing_them_on(nginx):
    """Buffering is the point: a slow client then holds an nginx connection, not a gunicorn thread."""
    (location,) = [block for block in nginx.blocks("location") if block.args == ["/"]]
    assert location.values("proxy_request_buffering") in ([], [["on"]])
    assert location.values("proxy_buffering") in ([], [["on"]])
    (http,) = nginx.blocks("http")
    assert http.values("client_body_timeout") and http.values("client_header_timeout")


def size_in_bytes(value: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(value[:-1]) * units[value[-1].lower()] if value[-1].lower() in units else int(value)


def test_the_proxy_takes_every_body_the_registry_takes_and_waits_longer_than_gunicorn(nginx):
    (http,) = nginx.blocks("http")
    assert [size_in_bytes(args[0]) for args in http.values("client_max_body_size")] == [Settings().max_content_length]
    (location,) = [block for block in nginx.blocks("location") if block.args == ["/"]]
    from registry import gunicorn_conf

    assert int(location.values("proxy_read_timeout")[0][0].rstrip("s")) > gunicorn_conf.timeout


def test_the_proxys_own_refusals_are_problem_json(nginx):
    """Requests nginx refuses itself (limits, timeouts, the app unreachable) get a problem, never its HTML."""
    (server,) = nginx.blocks("server")
    pages = {}
    for args in server.values("error_page"):
        *codes, page = args
        answered = next((int(code[1:]) for code in codes if code.startswith("=")), None)
        for code in codes:
            if not code.startswith("="):
                pages[int(code)] = (answered or int(code), page)
    assert {400, 408, 413, 414, 494, 502, 504} <= set(pages)
    locations = {tuple(block.args): block for block in nginx.blocks("location")}
    for code, (answered, page) in pages.items():
        location = locations[("=", page)]
        assert location.values("internal") == [[]], f"{page} must not be reachable from outside"
        assert location.values("default_type") == [["application/problem+json"]]
        ((status, body),) = location.values("return")
        problem = json.loads(body.replace("$registry_request_id", "0"))
        assert int(status) == answered == problem["status"], code
        slug = problem["type"].removeprefix(PROBLEM_TYPE_BASE)
        assert problem["type"] == "about:blank" or PROBLEM_TYPES[slug][0] == answered, problem["type"]
        assert problem["title"] and problem["detail"]


# --- health check ----------------------------------------------------------------------------

def serve_in_thread(app):
    server = make_server("127.0.0.1", 0, app, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def run_healthcheck(services, dockerfile, port: int) -> int:
    test = words(services["app"]["healthcheck"]["test"])
    assert test[0] == "CMD" and test[1] in ("python", "python3") and test[2] == "-c", \
        "python:3.11-slim has neither curl nor wget"
    code = test[3]
    bind_port = image_environment(dockerfile)["REGISTRY_BIND"].rsplit(":", 1)[1]
    target = f"127.0.0.1:{bind_port}/readyz"
    assert target in code
    code = code.replace(target, f"127.0.0.1:{port}/readyz")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=30).returncode


def test_app_healthcheck_passes_when_ready(services, dockerfile, database_url):
    app = create_app(make_settings(), database_url)
    server = serve_in_thread(app)
    try:
        assert run_healthcheck(services, dockerfile, server.server_port) == 0
    finally:
        server.shutdown()
        app.extensions["database"].close()


def test_app_healthcheck_fails_when_the_database_is_unreachable(services, dockerfile):
    app = create_app(make_settings(pool_timeout=1.0), UNREACHABLE_DATABASE)
    server = serve_in_thread(app)
    try:
        assert run_healthcheck(services, dockerfile, server.server_port) != 0
    finally:
        server.shutdown()
        app.extensions["database"].close()


# --- the image -------------------------------------------------------------------------------

def test_image_is_python_311_slim(dockerfile):
    assert instructions(dockerfile, "FROM") == ["python:3.11-slim"]


def test_image_runs_as_a_non_root_user(dockerfile):
    users = instructions(dockerfile, "USER")
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_image_serves_exactly_as_registry_serve_does(services, dockerfile, monkeypatch, tmp_path):
    cmd = json.loads(instructions(dockerfile, "CMD")[-1])
    assert cmd == ["gunicorn", "-c", "python:registry.gunicorn_conf", "registry:create_app()"]
    assert "command" not in services["app"] and "entrypoint" not in services["app"]
    assert not instructions(dockerfile, "ENTRYPOINT")

    started = []

    class FakeGunicorn:
        def __init__(self, argv, env):
            started.append(argv)

        def wait(self):
            return 0

    monkeypatch.setattr(serving.subprocess, "Popen", FakeGunicorn)
    monkeypatch.setattr(serving.signal, "signal", lambda signum, handler: signal.SIG_DFL)
    serving.serve(make_settings(data_dir=tmp_path), "postgresql:///registry", bind="127.0.0.1:8000",
                  workers=1, threads=1)
    assert started[0][started[0].index("gunicorn"):] == cmd  # after `python -m`


def test_image_keeps_the_migrations_beside_the_package(dockerfile):
    # registry/migrate.py looks for migrations/ next to the package: an install into
    # site-packages would leave them behind and `registry db upgrade` would find none.
    copied = " ".join(instructions(dockerfile, "COPY")).split()
    assert "registry" in copied and "migrations" in copied
    assert any(re.search(r"pip install (-e|--editable) \.", arguments) for arguments in instructions(dockerfile, "RUN"))


def test_every_path_the_image_copies_exists(dockerfile):
    for arguments in instructions(dockerfile, "COPY"):
        *sources, _destination = arguments.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file in the repository"


def test_the_proxys_logs_never_hold_a_query_string(nginx):
    # GET /v1/patients/?ref=... carries a patient's ref: nginx's default log format ($request)
    # and its error log lines (which quote the request line) would keep it in clear.
    (http,) = nginx.blocks("http")
    formats = {args[0]: " ".join(args[1:]) for args in http.values("log_format")}
    for args in http.values("access_log"):
        assert len(args) >= 2 and args[1] in formats, "a log format of the repository's own"
        assert "$request " not in formats[args[1]] + " " and "$request_uri" not in formats[args[1]] \
            and "$args" not in formats[args[1]] and "$query_string" not in formats[args[1]]
    assert http.values("error_log") and all(args[-1] in ("crit", "alert", "emerg") for args in http.values("error_log"))
