"""Local MariaDB servers for the demo, the bench and the tests.

Each server is made with ``mariadb-install-db`` in a directory of its own
and run by ``mariadbd --no-defaults`` on a free TCP port of 127.0.0.1 and a
socket in that directory, so nothing of the machine's own MariaDB (its
``/etc/mysql`` files, port 3306, its socket) is read or touched. The
binary log is on in the format a MariaDB campus needs (ROW, full row
images, full row metadata: node.engines.mariadb.server checks them). As
root, the server runs as the ``mysql`` user in a directory that user owns.
A server is stopped by the pid in its pid file, never by name.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ringsync.errors import RingsyncError

# The account the node (and a demo's scripts) use; tests may make others.
USER = "ringsync"
PASSWORD = "ringsync"
DATABASE = "campus"
START_TIMEOUT = 60.0

# The settings a campus needs, on the command line (--no-defaults reads no file).
SERVER_SETTINGS: dict[str, str | None] = {
    "binlog-format": "ROW",
    "binlog-row-image": "FULL",
    "binlog-row-metadata": "FULL",
    "innodb-buffer-pool-size": "64M",
    "innodb-log-file-size": "64M",
    "max-connections": "100",
    "skip-name-resolve": "",
    "character-set-server": "utf8mb4",
    "collation-server": "utf8mb4_bin",
    "default-time-zone": "+00:00",
}


def find_program(name: str) -> str:
    found = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists()
                                   else None)
    if not found:
        raise RingsyncError(
            f"the MariaDB program {name!r} was not found; install the server "
            f"(Debian/Ubuntu: `apt-get install mariadb-server`) and retry")
    return found


def installed() -> bool:
    """Whether this machine can start a local MariaDB server."""
    try:
        find_program("mariadbd")
        find_program("mariadb-install-db")
    except RingsyncError:
        return False
    return True


def _run_as() -> str | None:
    """The user the server runs as: ourselves, or 'mysql' when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("mysql")
    except KeyError:
        raise RingsyncError(
            "running as root, MariaDB needs an unprivileged user: create one named "
            "'mysql' (the Debian package does) or run as a normal user") from None
    return "mysql"


@dataclass
class LocalMariaDB:
    """One server: ``base`` holds its data, socket, pid file, logs."""

    base: Path
    port: int
    server_id: int = 1
    # overrides of SERVER_SETTINGS (None leaves a setting out, "" is a bare flag)
    settings: dict[str, str | None] = field(default_factory=dict)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def socket(self) -> Path:
        return self.base / "mariadb.sock"

    @property
    def pid_file(self) -> Path:
        return self.base / "mariadbd.pid"

    @property
    def error_log(self) -> Path:
        return self.base / "error.log"

    @property
    def tmpdir(self) -> Path:
        """The server's own temporary directory, never the machine's /tmp: a
        starting mariadbd (and mariadb-install-db's) removes every ``#sql*``
        file it finds in its tmpdir as a crash's leftover, including the
        temporary tables of the other servers sharing it (the machine's own)."""
        return self.base / "tmp"

    @property
    def password(self) -> str:
        return PASSWORD

    def url(self, user: str = USER, password: str | None = PASSWORD,
            database: str = DATABASE) -> str:
        """A ``mysql://`` URL a script connects with (``password`` None: without
        it, for a node's config, whose password_file holds it)."""
        secret = f":{password}" if password is not None else ""
        return f"mysql://{user}{secret}@127.0.0.1:{self.port}/{database}"

    @classmethod
    def create(cls, port: int, server_id: int = 1, base: Path | None = None,
               settings: dict[str, str | None] | None = None) -> LocalMariaDB:
        """A new, stopped server in ``base`` (a new temporary directory when None)."""
        base = base or Path(tempfile.mkdtemp(prefix="ringsync-mariadb-"))
        base.mkdir(parents=True, exist_ok=True)
        user = _run_as()
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(base, entry.pw_uid, entry.pw_gid)
        base.chmod(0o700)
        server = cls(base, port, server_id, dict(settings or {}))
        server.tmpdir.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            os.chown(server.tmpdir, entry.pw_uid, entry.pw_gid)
        command = [find_program("mariadb-install-db"), "--no-defaults",
                   f"--datadir={server.datadir}", "--auth-root-authentication-method=normal",
                   "--skip-test-db", f"--tmpdir={server.tmpdir}"]
        if user is not None:
            command.append(f"--user={user}")
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/")
        if result.returncode != 0:
            raise RingsyncError(f"mariadb-install-db failed ({result.returncode}): "
                                f"{(result.stderr or result.stdout).strip()[-1500:]}")
        return server

    def command(self) -> list[str]:
        settings: dict[str, str | None] = {
                    **SERVER_SETTINGS, "log-bin": str(self.datadir / "binlog"),
                    "server-id": str(self.server_id), **self.settings}
        args = [find_program("mariadbd"), "--no-defaults", f"--datadir={self.datadir}",
                f"--port={self.port}", "--bind-address=127.0.0.1", f"--socket={self.socket}",
                f"--pid-file={self.pid_file}", f"--log-error={self.error_log}",
                f"--tmpdir={self.tmpdir}"]
        user = _run_as()
        if user is not None:
            args.append(f"--user={user}")
        for name, value in settings.items():
            if value is None:
                continue
            args.append(f"--{name}={value}" if value != "" else f"--{name}")
        return args

    def start(self) -> None:
        """Start the server and wait until it takes connections (its pid file
        appears once it does); then make the campus account and database."""
        self.pid_file.unlink(missing_ok=True)
        process = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   cwd="/", start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while self.pid() is None or not self._answers():
            if process.poll() is not None:
                raise RingsyncError(f"mariadbd exited ({process.returncode}) at start: "
                                    f"{self._log_tail()}")
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RingsyncError(f"mariadbd did not take connections within "
                                    f"{START_TIMEOUT:.0f} s: {self._log_tail()}")
            time.sleep(0.1)
        self._process = process
        self.admin(f"CREATE DATABASE IF NOT EXISTS {DATABASE} CHARACTER SET utf8mb4",
                   f"CREATE USER IF NOT EXISTS '{USER}'@'127.0.0.1' IDENTIFIED BY '{PASSWORD}'",
                   f"GRANT ALL PRIVILEGES ON *.* TO '{USER}'@'127.0.0.1' WITH GRANT OPTION")

    def _answers(self) -> bool:
        import pymysql

        if not self.socket.exists():
            return False
        try:
            pymysql.connect(unix_socket=str(self.socket), user="root", password="",
                            connect_timeout=2).close()
        except pymysql.err.OperationalError:
            return False
        return True

    def _log_tail(self) -> str:
        try:
            return self.error_log.read_text(errors="replace").strip()[-1500:]
        except OSError:
            return "(no error log)"

    def admin(self, *statements: str) -> None:
        """Run statements as the server's root, over its socket."""
        import pymysql

        conn = pymysql.connect(unix_socket=str(self.socket), user="root", password="",
                               autocommit=True, connect_timeout=10)
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
        finally:
            conn.close()

    def pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self) -> bool:
        pid = self.pid()
        return pid is not None and self._alive(pid)

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM by pid and wait for the server to exit (SIGKILL after ``timeout``)."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL by pid, as a crash would (the tests' kill -9)."""
        self._signal(signal.SIGKILL, 30.0)

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        pid = self.pid()
        if pid is None or not self.running():
            return
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while self._alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 30.0
            time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        self.socket.unlink(missing_ok=True)

    def _alive(self, pid: int) -> bool:
        process = getattr(self, "_process", None)
        if process is not None and process.pid == pid:
            return process.poll() is None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # alive, another user's
        return True

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
