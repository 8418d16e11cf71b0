"""Local etcd servers for the demo, the drills and the tests.

A LocalEtcd is one etcd cluster of 1 or 3 members on free 127.0.0.1 ports,
each member its own process and data directory, started from Debian's
``etcd-server`` package. Members are stopped by their own pid, never by
name, so a drill can stop one member (``etcd-member-loss``) and start it
again while the others keep a quorum.

Started with a cluster's pki directory (``start(pki_dir)``), the members
speak TLS only, to clients and to each other: each gets a certificate
issued by the cluster CA with ``--role etcd`` (``etcd-<member>.crt``),
and clients must present a certificate of the same CA (etcd's
``--client-cert-auth``), as ``[dr] etcd_tls`` makes nodes, ctl and the
console do.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from ringsync.commands.demo.cluster import free_port
from ringsync.errors import RingsyncError

READY_TIMEOUT_SECONDS = 20.0


def find_etcd() -> Path:
    """The etcd server binary, or a clear error naming the package to install."""
    found = shutil.which("etcd")
    if found:
        return Path(found)
    raise RingsyncError(
        "the etcd server was not found; install it (Debian/Ubuntu: `apt-get install "
        "etcd-server`) and retry; without etcd, automatic failover is off"
    )


@dataclass
class EtcdMember:
    name: str
    dir: Path
    client_port: int
    peer_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class LocalEtcd:
    root: Path
    members: list[EtcdMember] = field(default_factory=list)
    pki_dir: Path | None = None  # set by start(pki_dir): TLS with the cluster CA

    @classmethod
    def create(cls, root: Path, size: int = 1) -> LocalEtcd:
        if size not in (1, 3):
            raise RingsyncError("a local etcd cluster has 1 or 3 members")
        find_etcd()
        root.mkdir(parents=True, exist_ok=True)
        etcd = cls(root)
        for i in range(size):
            name = f"etcd{i}"
            etcd.members.append(EtcdMember(name, root / name, free_port(), free_port()))
        return etcd

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def _scheme(self) -> str:
        return "https" if self.pki_dir is not None else "http"

    def _command(self, m: EtcdMember) -> list[str]:
        scheme = self._scheme()
        peer = {x.name: x.peer_url.replace("http://", f"{scheme}://") for x in self.members}
        cluster = ",".join(f"{name}={url}" for name, url in peer.items())
        client_url = f"{scheme}://{m.endpoint}"
        tls: list[str] = []
        if self.pki_dir is not None:
            ca, cert, key = self._tls_files(m)
            tls = ["--cert-file", str(cert), "--key-file", str(key), "--client-cert-auth",
                   "--trusted-ca-file", str(ca), "--peer-cert-file", str(cert),
                   "--peer-key-file", str(key), "--peer-client-cert-auth",
                   "--peer-trusted-ca-file", str(ca)]
        return [*self._base_command(m, cluster, client_url, peer[m.name]), *tls]

    def _tls_files(self, m: EtcdMember) -> tuple[Path, Path, Path]:
        assert self.pki_dir is not None
        return (self.pki_dir / "ca.crt", self.pki_dir / f"etcd-{m.name}.crt",
                self.pki_dir / f"etcd-{m.name}.key")

    def _base_command(self, m: EtcdMember, cluster: str, client_url: str,
                      peer_url: str) -> list[str]:
        return [
            str(find_etcd()), "--name", m.name, "--data-dir", str(m.dir / "data"),
            "--listen-client-urls", client_url, "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", cluster, "--initial-cluster-state", "new",
            "--initial-cluster-token", f"ringsync-{os.getpid()}-{id(self)}",
            # Local members: elect within a second of losing the leader.
            "--heartbeat-interval", "100", "--election-timeout", "1000",
            "--logger", "zap", "--log-outputs", str(m.dir / "etcd.log"),
        ]

    def start(self, pki_dir: Path | None = None) -> None:
        """Start every member; with ``pki_dir`` (a cluster's), over TLS only."""
        if pki_dir is not None:
            from ringsync import pki

            self.pki_dir = pki_dir
            for m in self.members:
                if not self._tls_files(m)[1].exists():
                    pki.issue(pki_dir, "etcd", m.name, hosts=("127.0.0.1",),
                              out_stem=f"etcd-{m.name}")
        for m in self.members:
            self.start_member(m.name, wait=False)
        self.wait_ready()

    def start_member(self, name: str, wait: bool = True) -> None:
        m = self.member(name)
        if m.running():
            return
        m.dir.mkdir(parents=True, exist_ok=True)
        out = (m.dir / "stdout.log").open("ab")
        m.process = subprocess.Popen(self._command(m), stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        self._write_pids()
        if wait:
            self.wait_ready([m])

    def stop_member(self, name: str, sig: int = signal.SIGTERM) -> None:
        m = self.member(name)
        if m.process is not None and m.process.poll() is None:
            m.process.send_signal(sig)
            try:
                m.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                m.process.kill()
                m.process.wait(timeout=10)
        self._write_pids()

    def stop(self) -> None:
        for m in self.members:
            self.stop_member(m.name)

    def member(self, name: str) -> EtcdMember:
        return next(m for m in self.members if m.name == name)

    def wait_ready(self, members: list[EtcdMember] | None = None) -> None:
        """Until every given member answers its health endpoint (quorum reached)."""
        import urllib.request

        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for m in members or self.members:
            while True:
                if m.process is not None and m.process.poll() is not None:
                    tail = (m.dir / "etcd.log").read_text(errors="replace")[-1500:] if (
                        m.dir / "etcd.log").exists() else ""
                    raise RingsyncError(f"etcd member {m.name} exited "
                                        f"({m.process.returncode}):\n{tail}")
                try:
                    with urllib.request.urlopen(f"{self._scheme()}://{m.endpoint}/health",
                                                timeout=1, context=self._client_ssl(m)) as reply:
                        if json.loads(reply.read()).get("health") == "true":
                            break
                except (OSError, ValueError):
                    pass
                if time.monotonic() > deadline:
                    raise RingsyncError(f"etcd member {m.name} did not become healthy "
                                        f"within {READY_TIMEOUT_SECONDS:.0f}s; see {m.dir}")
                time.sleep(0.1)

    def _client_ssl(self, m: EtcdMember) -> ssl.SSLContext | None:
        """The health check's TLS: the CA, and the member's own certificate as
        the client's (it carries 127.0.0.1, the address dialled)."""
        if self.pki_dir is None:
            return None
        ca, cert, key = self._tls_files(m)
        context = ssl.create_default_context(cafile=str(ca))
        context.load_cert_chain(str(cert), str(key))
        return context

    def _write_pids(self) -> None:
        pids = {m.name: m.process.pid for m in self.members if m.running()
                and m.process is not None}
        (self.root / "pids.json").write_text(json.dumps(pids))
