"""A real PostgreSQL for the fleet tests: Debian's server binaries (the ``postgresql`` package),
a throwaway cluster under /tmp started on a port of its own, run as the ``postgres`` user when
the tests run as root (the server refuses root), and removed afterwards."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError(f"PostgreSQL's {name} is not installed (apt install postgresql)")
    return found[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgServer:
    """One PostgreSQL cluster: ``start``, ``stop`` (to make it unreachable), ``url(db)``, ``createdb``."""

    USER = "shadowrec"

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="shadowrec-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.root = os.geteuid() == 0
        if self.root:
            shutil.chown(self.dir, "postgres", "postgres")
        os.chmod(self.dir, 0o700)
        self._run(_bin("initdb"), "-D", self.data, "-A", "trust", "-U", self.USER, "--no-sync", "-E", "UTF8")

    def _run(self, *cmd: str) -> str:
        if self.root:
            cmd = ("runuser", "-u", "postgres", "--", *cmd)
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120).stdout

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
        self._run(_bin("pg_ctl"), "-D", self.data, "-o", opts, "-l", os.path.join(self.dir, "log"), "-w", "start")

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop")

    def url(self, db: str = "postgres", unix: bool = False) -> str:
        """Over TCP on 127.0.0.1, or (``unix``) its socket in the cluster's directory, which
        processes in other network namespaces reach too (the labs' appliances)."""
        if unix:
            return f"postgresql://{self.USER}@/{db}?host={self.dir}&port={self.port}"
        return f"postgresql://{self.USER}@127.0.0.1:{self.port}/{db}"

    def createdb(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        return self.url(name)

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # stopped already
        shutil.rmtree(self.dir, ignore_errors=True)
