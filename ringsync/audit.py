"""The audit trail's format, and its verification (the node writes it with
node.audit; ``ringsync audit`` verifies and queries a copy).

A campus's trail is a directory (``<data_dir>/audit/`` at the node) of two
files, one JSON object per line, every line in canonical form (keys sorted,
no spaces, ASCII only), so a line is exactly the bytes its object makes:

- ``trail.jsonl``: the entries. Each has ``n`` (1, 2, 3, ...), ``prev`` (the
  hash of entry n-1; 64 zeros for the first) and ``hash``, the SHA-256 of the
  entry's canonical form without ``hash``: a hash chain. An entry holds no
  row contents; a row is named by ``key_hash``, a keyed hash (HMAC-SHA256)
  of its table and primary key, which only a holder of the trail's key can
  compute, to look a record up.
- ``checkpoints.jsonl``: after every batch of entries the node signs the
  chain's head: ``campus``, ``n``, ``hash`` (entry n's), ``at``, ``cert``
  (the node certificate, PEM) and ``sig``, an ECDSA signature by the node's
  key over the canonical form of the rest.

``verify_trail`` re-derives every hash, checks every link and every
checkpoint's signature and that it names the entry the chain holds at its
``n``; with the cluster CA, also that each signing certificate is a node
certificate of that campus issued by the CA. Any change to a byte of either
file breaks one of these. Entries after the last checkpoint are protected by
the chain only (a cut there, or one made together with a new chain, needs
the node's key, or shows against a checkpoint kept elsewhere).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ringsync.pki import identity_from_pem, issued_by

TRAIL_FILE = "trail.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
GENESIS = "0" * 64
KEY_HASH_HEX = 32  # 128 bits of the HMAC: enough to tell records apart, no more
# The fields every entry has, besides the chain's n, prev and hash.
ENTRY_FIELDS = ("at", "campus", "event", "action", "who", "outcome")


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                      allow_nan=False).encode()


def chained(fields: dict[str, Any], n: int, prev: str) -> tuple[bytes, str]:
    """Entry ``n`` after the entry whose hash is ``prev``: its line and hash."""
    body = {**fields, "n": n, "prev": prev}
    digest = hashlib.sha256(canonical(body)).hexdigest()
    return canonical({**body, "hash": digest}) + b"\n", digest


def key_hash(secret: bytes, table: str, key: Any) -> str:
    """The keyed hash naming a row (``key``: its primary key values, as JSON
    makes them) in the trail: the same at every campus that holds ``secret``."""
    return hmac.new(secret, canonical([table, key]), hashlib.sha256).hexdigest()[:KEY_HASH_HEX]


def now_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def signing_key(key_pem: bytes) -> ec.EllipticCurvePrivateKey:
    """The node key that signs checkpoints, from its PEM file's bytes."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("the node key is not an elliptic-curve key (ringsync pki makes them)")
    return key


def checkpoint_line(campus: str, n: int, head: str, cert_pem: bytes,
                    key: ec.EllipticCurvePrivateKey) -> bytes:
    """A signed checkpoint of a chain whose entry ``n`` has hash ``head``."""
    body = {"campus": campus, "n": n, "hash": head, "at": now_text(),
            "cert": cert_pem.decode("ascii")}
    sig = key.sign(canonical(body), ec.ECDSA(hashes.SHA256()))
    return canonical({**body, "sig": sig.hex()}) + b"\n"


@dataclass
class TrailReport:
    """What ``verify_trail`` found: ``breaks`` empty means intact."""

    path: str
    campus: str = ""
    entries: int = 0
    checkpoints: int = 0
    head: str = GENESIS
    signed_through: int = 0  # the last checkpoint's n
    breaks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.breaks

    @property
    def unsigned(self) -> int:
        """Entries after the last checkpoint."""
        return self.entries - self.signed_through

    def to_json_obj(self) -> dict[str, Any]:
        return {"path": self.path, "campus": self.campus, "ok": self.ok,
                "entries": self.entries, "checkpoints": self.checkpoints, "head": self.head,
                "signed_through": self.signed_through, "unsigned": self.unsigned,
                "breaks": self.breaks}


MAX_BREAKS = 20  # a trail rewritten from the start breaks on every line: name the first few


def _lines(path: Path, report: TrailReport) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for every line of ``path`` that is one canonical
    JSON object; every other line is a break."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        report.breaks.append(f"{path.name}: the last line is incomplete (cut, or a copy "
                             f"taken while it was written: copy it again)")
    for number, raw in enumerate(data.split(b"\n")[:-1] if data else [], start=1):
        try:
            obj = json.loads(raw.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            report.breaks.append(f"{path.name} line {number}: not a JSON object")
            continue
        if not isinstance(obj, dict) or canonical(obj) != raw:
            report.breaks.append(f"{path.name} line {number}: not in canonical form "
                                 f"(changed after it was written)")
            continue
        yield number, obj


def _check_entries(directory: Path, report: TrailReport, wanted: set[int]) -> dict[int, str]:
    """Walk the chain; the hashes of entries ``wanted`` (the checkpoints' n)."""
    found: dict[int, str] = {}
    prev, expected_n = GENESIS, 1
    for number, obj in _lines(directory / TRAIL_FILE, report):
        where = f"{TRAIL_FILE} line {number}"
        stored = obj.pop("hash", None)
        digest = hashlib.sha256(canonical(obj)).hexdigest()
        if stored != digest:
            report.breaks.append(f"{where}: its hash does not match its contents")
        if obj.get("prev") != prev:
            report.breaks.append(f"{where}: it does not follow the entry before it")
        if type(obj.get("n")) is not int or obj.get("n") != expected_n:
            report.breaks.append(f"{where}: entry number {obj.get('n')!r}, expected "
                                 f"{expected_n}")
        missing = [f for f in ENTRY_FIELDS if f not in obj]
        if missing:
            report.breaks.append(f"{where}: lacks {', '.join(missing)}")
        campus = obj.get("campus")
        if report.campus and campus != report.campus:
            report.breaks.append(f"{where}: campus {campus!r} in the trail of {report.campus}")
        report.campus = report.campus or str(campus or "")
        if expected_n in wanted:
            found[expected_n] = digest
        prev, expected_n = digest, expected_n + 1
        report.entries += 1
    report.head = prev
    return found


def _check_signature(obj: dict[str, Any], where: str, ca: x509.Certificate | None,
                     report: TrailReport) -> None:
    body = {k: v for k, v in obj.items() if k != "sig"}
    try:
        cert = x509.load_pem_x509_certificate(str(obj.get("cert", "")).encode("ascii"))
        public = cert.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey):
            raise ValueError("not an elliptic-curve key")
        sig = bytes.fromhex(str(obj.get("sig", "")))
        if sig.hex() != obj.get("sig"):  # fromhex takes capitals and spaces too
            raise ValueError("not the signature as written")
        public.verify(sig, canonical(body), ec.ECDSA(hashes.SHA256()))
    except Exception:  # changed bytes make every kind of error in the certificate's parser
        report.breaks.append(f"{where}: its signature does not verify")
        return
    if ca is not None:
        refused = issued_by(cert, ca)
        identity = identity_from_pem(str(obj["cert"]).encode("ascii"))
        if refused:
            report.breaks.append(f"{where}: signed by a certificate that {refused}")
        elif identity is None or (identity.role, identity.name) != ("node", obj.get("campus")):
            report.breaks.append(f"{where}: signed by {identity}, not by node/"
                                 f"{obj.get('campus')}")


def verify_trail(directory: Path, ca_pem: bytes | None = None) -> TrailReport:
    """Check a campus's trail (a copy will do: no node need run)."""
    report = TrailReport(str(directory))
    if not (directory / TRAIL_FILE).exists():
        report.breaks.append(f"no {TRAIL_FILE} in {directory}: not an audit trail directory")
        return report
    ca = x509.load_pem_x509_certificate(ca_pem) if ca_pem is not None else None
    checkpoints = list(_lines(directory / CHECKPOINTS_FILE, report))
    wanted = {obj["n"] for _, obj in checkpoints if type(obj.get("n")) is int}
    hashes_at = _check_entries(directory, report, wanted)
    last = 0
    for number, obj in checkpoints:
        where = f"{CHECKPOINTS_FILE} line {number}"
        report.checkpoints += 1
        n = obj.get("n")
        if type(n) is not int or n < last:
            report.breaks.append(f"{where}: entry number {n!r} goes back (after {last})")
            continue
        last = n
        if obj.get("campus") != report.campus and report.campus:
            report.breaks.append(f"{where}: campus {obj.get('campus')!r} in the trail of "
                                 f"{report.campus}")
        if n > report.entries:
            report.breaks.append(f"{where}: signs entry {n}, but the trail holds "
                                 f"{report.entries} (entries were removed)")
        elif hashes_at.get(n) != obj.get("hash"):
            report.breaks.append(f"{where}: entry {n} is not the one it signed")
        _check_signature(obj, where, ca, report)
    report.signed_through = min(last, report.entries)
    if len(report.breaks) > MAX_BREAKS:
        more = len(report.breaks) - MAX_BREAKS
        report.breaks = report.breaks[:MAX_BREAKS] + [f"... and {more} more"]
    return report


def read_entries(directory: Path) -> Iterator[dict[str, Any]]:
    """Every entry of a trail, in order (as written; ``verify_trail`` says
    whether it can be trusted)."""
    for line in (directory / TRAIL_FILE).read_bytes().splitlines():
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj
