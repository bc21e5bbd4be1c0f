"""A throw-away PostgreSQL server for the scale-out tests: initdb + pg_ctl in a temporary folder.

Uses the server binaries of the Debian package `postgresql` (/usr/lib/postgresql/<v>/bin; .ci/run
installs the package when missing). initdb refuses to run as root, so as root the cluster is
created and run by the `postgres` system user the package adds (runuser)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

PORT_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


MISSING = ("PostgreSQL server binaries (initdb, pg_ctl) not found: the scale-out tests start their "
           "own server from them (Debian / Ubuntu: apt-get install postgresql; .ci/run installs "
           "the package)")


def find_server_bindir() -> Path | None:
    """The newest Debian package's binaries, else `pg_config --bindir`'s, else initdb on PATH."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    if candidates:
        return Path(candidates[0]).parent
    if shutil.which("pg_config"):
        found = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                               check=False).stdout.strip()
        if found and (Path(found) / "initdb").exists():
            return Path(found)
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def server_bindir() -> Path:
    found = find_server_bindir()
    if found is None:
        raise RuntimeError(MISSING)
    return found


class PostgresServer:
    def __init__(self) -> None:
        self.bindir = server_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="bma_quant_pg_"))
        self.data = self.root / "data"
        self.port = free_port()
        self._as_user = os.geteuid() == 0

    def _run(self, *args: str) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self._as_user:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)

    def start(self) -> PostgresServer:
        if self._as_user:
            os.chmod(self.root, 0o755)
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                  "--no-sync")
        # the port is free when picked but another process may bind it before the server does:
        # a start that fails is retried on a fresh port
        for attempt in range(PORT_ATTEMPTS):
            try:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
                          "-w", "-o", f"-p {self.port} -k {self.root} "
                          "-c listen_addresses=127.0.0.1 -c fsync=off", "start")
                return self
            except subprocess.CalledProcessError:
                log = self.root / "server.log"
                taken = log.is_file() and "could not bind" in log.read_text(errors="replace")
                if not taken or attempt == PORT_ATTEMPTS - 1:
                    raise  # not the port (a server still starting would hold the data folder)
                log.unlink()
                self.port = free_port()
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
