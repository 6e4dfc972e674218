"""A throwaway PostgreSQL cluster for the tests, from Debian's ``postgresql`` package.

:class:`Cluster` makes a cluster with ``initdb`` in a fresh temporary
directory, starts it with ``pg_ctl`` listening on 127.0.0.1 on a free port
(and on a Unix socket in that directory only), and deletes it all when
stopped. ``initdb`` and ``postgres`` refuse to run as root: as root, they run
as the ``postgres`` user (made by the Debian package), which then owns the
directory. Durability is switched off (``fsync``): the cluster is thrown away.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

USER = "salara"
"""The cluster's superuser (trusted on 127.0.0.1 and its socket: a test cluster only)."""


def bin_dir() -> Path | None:
    """The newest ``/usr/lib/postgresql/N/bin`` with ``initdb`` and ``pg_ctl``, or None (package missing)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Cluster:
    """A PostgreSQL cluster in a temporary directory, on 127.0.0.1 at :attr:`port`; :meth:`start`, :meth:`stop`."""

    def __init__(self, binaries: Path) -> None:
        self.binaries = binaries
        self.dir = Path(tempfile.mkdtemp(prefix="salara-pg-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self._owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None

    def url(self, dbname: str = "postgres") -> str:
        """The libpq URI of database ``dbname`` of the cluster (no password: trusted)."""
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, args: Sequence[str]) -> None:
        command = [str(self.binaries / args[0]), *args[1:]]
        if self._owner is not None:
            command = ["runuser", "-u", self._owner.pw_name, "--", *command]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=120, cwd=self.dir)

    def start(self) -> None:
        """Make the cluster and start it (waits until it takes connections). Raises CalledProcessError."""
        if self._owner is not None:
            os.chown(self.dir, self._owner.pw_uid, self._owner.pw_gid)
        self._run(["initdb", "-D", str(self.data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"])
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.dir}"
            " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run(["pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w", "start"])

    def stop(self) -> None:
        """Stop the cluster (fast: disconnects clients) and delete its directory."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def migrated_database(name: str) -> Iterator[str]:
    """A throwaway cluster with a database ``name`` migrated to this salara's schema; yields its URL.

    Raises RuntimeError without Debian's postgresql package (scripts/setup.sh installs it).
    """
    import psycopg

    from salara.store import migrate

    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError("Debian's postgresql package is not installed (scripts/setup.sh installs it)")
    cluster = Cluster(binaries)
    try:
        cluster.start()
        with psycopg.connect(cluster.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        url = cluster.url(name)
        with psycopg.connect(url, autocommit=True) as db:
            migrate.migrate(db)
        yield url
    finally:
        cluster.stop()
