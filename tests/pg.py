"""A throwaway PostgreSQL server for the tests: initdb and pg_ctl in a temporary folder.

`PostgresServer` finds the server programs (Debian's ``postgresql``
package puts them in ``/usr/lib/postgresql/VERSION/bin``), makes a cluster
in a fresh temporary folder, and runs it on a free loopback port with its
Unix socket in that folder.  initdb refuses to run as root, so a root test
run hands the folder to the ``postgres`` user and runs the programs as it.
`unavailable` says why the server cannot run here, for a clear skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import psycopg2.extensions

#: Bound on each server command, in seconds.
WAIT = 60

#: Who runs the server when the tests run as root.
SERVER_USER = "postgres"


def server_bin() -> Path | None:
    """The folder of initdb and pg_ctl, newest version first, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: [int(x) for x in p.split("/")[4].split(".") if x.isdigit()],
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unavailable() -> str | None:
    """Why a test server cannot run here (for a skip), or None when it can."""
    if server_bin() is None:
        return (
            "PostgreSQL server programs (initdb, pg_ctl) not found: "
            "install Debian's postgresql package (make test does as root)"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER} user to run initdb as"
        if shutil.which("runuser") is None:
            return "running as root and runuser is missing"
    return None


def free_port() -> int:
    """A loopback TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a temporary folder; `stop` and `start` at will."""

    def __init__(self, *, durable: bool = False) -> None:
        """Make the cluster and start it; ``durable`` keeps fsync on (for measuring)."""
        bindir = server_bin()
        self.durable = durable
        assert bindir is not None, unavailable()
        self.bin = bindir
        self.root = Path(tempfile.mkdtemp(prefix="guessgame-pg-"))
        self.data = self.root / "data"
        self.logfile = self.root / "server.log"
        self.port = free_port()
        self._databases = 0
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam(SERVER_USER)
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", SERVER_USER, "--"]
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        self.start()

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run(
            [*self._as, str(self.bin / program), *args],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            timeout=WAIT,
            check=False,
            cwd=self.root,
        )
        if done.returncode != 0:
            log = self.logfile.read_text(errors="replace") if self.logfile.exists() else ""
            raise RuntimeError(
                f"{program} failed ({done.returncode}): "
                f"{done.stderr.decode(errors='replace')}\n{log}"
            )

    def start(self) -> None:
        """Start the server (again) on its port, and wait until it takes connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c max_connections=200"
        )
        if not self.durable:
            # A test's data need not survive a power cut: no fsync, faster tests.
            options += " -c fsync=off -c full_page_writes=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.logfile), "-o", options,
            "-w", "-t", str(WAIT), "start",
        )  # fmt: skip

    def stop(self) -> None:
        """Stop the server at once (connections are cut)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def uri(self, dbname: str = "postgres") -> str:
        """A connection URI for ``dbname`` over TCP."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg2.extensions.connection:
        """A connection of the test's own, in autocommit mode."""
        conn = psycopg2.connect(self.uri(dbname), connect_timeout=10)
        conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
        return conn

    def new_database(self) -> str:
        """Create an empty database; its URI."""
        self._databases += 1
        name = f"game{self._databases}"
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {name}")
        finally:
            conn.close()
        return self.uri(name)

    def destroy(self) -> None:
        """Stop the server and remove its folder."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
