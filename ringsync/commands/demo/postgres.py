"""Local PostgreSQL servers for the demo and the tests, made with initdb/pg_ctl.

Each server gets its own data directory and a free TCP port on 127.0.0.1,
with logical decoding configured (wal_level = logical, slots and senders).
PostgreSQL refuses to run as root, so when we are root the server runs as
the unprivileged ``postgres`` user, in a directory that user can reach.
Servers are stopped by their data directory's postmaster pid (pg_ctl stop),
never by name.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ringsync.errors import RingsyncError

SUPERUSER = "ringsync"
SERVER_SETTINGS = {
    "wal_level": "logical",
    "max_replication_slots": "16",
    "max_wal_senders": "16",
    "listen_addresses": "'127.0.0.1'",
    "unix_socket_directories": "''",
    "fsync": "on",
    "shared_buffers": "64MB",
    "max_connections": "50",
    "logging_collector": "off",
}


def find_bin(name: str) -> Path:
    """A PostgreSQL server binary, from PATH or Debian's versioned directories."""
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"),
                      key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    for bindir in reversed(versions):
        if (bindir / name).exists():
            return bindir / name
    raise RingsyncError(
        f"the PostgreSQL server program {name!r} was not found; install the server "
        f"(Debian/Ubuntu: `apt-get install postgresql`) and retry"
    )


def _run_as() -> str | None:
    """The user to run the server as: ourselves, or 'postgres' when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RingsyncError(
            "running as root, PostgreSQL needs an unprivileged user: create one named "
            "'postgres' (the Debian package does) or run as a normal user"
        ) from None
    return "postgres"


@dataclass
class LocalPostgres:
    datadir: Path
    port: int

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname=postgres"

    def _run(self, *args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        user = _run_as()
        result = subprocess.run(
            [str(a) for a in args], capture_output=True, text=True, timeout=timeout,
            user=user, group=user, cwd="/",
        )
        if result.returncode != 0:
            raise RingsyncError(
                f"{Path(str(args[0])).name} failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-1500:]}"
            )
        return result

    @classmethod
    def create(cls, datadir: Path | None, port: int) -> LocalPostgres:
        """initdb a new cluster. With datadir None (or when root), use a private temp dir."""
        user = _run_as()
        if datadir is None or user is not None:
            base = Path(tempfile.mkdtemp(prefix="ringsync-pg-"))
            datadir = base / "pgdata"
            if user is not None:
                entry = pwd.getpwnam(user)
                os.chown(base, entry.pw_uid, entry.pw_gid)
                base.chmod(0o700)
        pg = cls(datadir, port)
        pg._run(find_bin("initdb"), "-D", datadir, "-U", SUPERUSER, "-A", "trust",
                "-E", "UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C")
        conf = datadir / "postgresql.conf"
        settings = {**SERVER_SETTINGS, "port": str(port)}
        extra = "".join(f"{k} = {v}\n" for k, v in settings.items())
        if user is not None:
            pg._run("sh", "-c", f"cat >> '{conf}' <<'EOF'\n{extra}EOF")
        else:
            with conf.open("a") as fh:
                fh.write(extra)
        return pg

    def start(self) -> None:
        self._run(find_bin("pg_ctl"), "-D", self.datadir, "-l", self.datadir / "server.log",
                  "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        if not (self.datadir / "postmaster.pid").exists() or not self.running():
            return  # not running (a postmaster killed with SIGKILL leaves its pid file)
        self._run(find_bin("pg_ctl"), "-D", self.datadir, "-m", mode, "-w", "-t", "60", "stop")

    def restart(self) -> None:
        self._run(find_bin("pg_ctl"), "-D", self.datadir, "-l", self.datadir / "server.log",
                  "-m", "fast", "-w", "-t", "60", "restart")

    def pid(self) -> int | None:
        try:
            return int((self.datadir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, owned by the postgres user
        return True

    def remove(self) -> None:
        self.stop()
        root = self.datadir.parent if self.datadir.parent.name.startswith("ringsync-pg-") else (
            self.datadir)
        shutil.rmtree(root, ignore_errors=True)


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return False
    return any(line.lower() in ("c.utf8", "c.utf-8") for line in out.splitlines())
