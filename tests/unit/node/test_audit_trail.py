"""The audit trail (node.audit writes it, ringsync.audit checks it): every
single-byte change is found, removals too, a torn tail is dropped and
recorded, and `ringsync audit` verifies and queries a copy offline."""

from __future__ import annotations

import asyncio
import json
import random
import shutil
from pathlib import Path

import pytest

from node import audit as node_audit
from node.audit import AuditTrail
from ringsync import pki
from ringsync.audit import CHECKPOINTS_FILE, TRAIL_FILE, key_hash, verify_trail
from ringsync.client import Credentials
from ringsync.commands.cli import main
from ringsync.config import TLSFiles


def credentials(ca_dir: Path, campus: str) -> Credentials:
    cert, key = pki.issue(ca_dir, "node", campus, ("localhost",))
    return Credentials(TLSFiles(ca_dir / "ca.crt", cert, key))


def written_trail(ca_dir: Path, data_dir: Path, batches: int = 12) -> AuditTrail:
    trail = AuditTrail(data_dir, "chaohui", credentials(ca_dir, "chaohui"))
    trail.open()

    async def act() -> None:
        for i in range(batches):
            await trail.record("repair", "operator/oncall", "done", table="patients",
                               key=[f"p-{i}"], repair_action="take")
            await trail.record("dead-letter", "operator/oncall", "refused: DeadLetterRefused",
                               table="lab_orders", key=json.dumps([i]), id=i)
    asyncio.run(act())
    return trail


def test_a_written_trail_verifies_and_holds_no_row_contents(ca_dir: Path, tmp_path: Path):
    trail = written_trail(ca_dir, tmp_path / "data")
    report = verify_trail(trail.directory, (ca_dir / "ca.crt").read_bytes())
    assert report.ok, report.breaks
    assert (report.campus, report.entries, report.checkpoints) == ("chaohui", 24, 24)
    assert report.signed_through == 24 and report.unsigned == 0
    text = (trail.directory / TRAIL_FILE).read_text()
    assert "p-3" not in text  # rows are named by their keyed hash only
    secret = (tmp_path / "data" / "audit.key").read_bytes()
    assert key_hash(secret, "patients", ["p-3"]) in text
    assert key_hash(b"another key" * 3, "patients", ["p-3"]) not in text
    for path in (trail.directory, trail.directory / TRAIL_FILE, tmp_path / "data" / "audit.key"):
        assert path.stat().st_mode & 0o077 == 0


def test_every_single_byte_change_is_found(ca_dir: Path, tmp_path: Path):
    """1,000 random single-byte tamperings of the trail and of its checkpoints."""
    trail = written_trail(ca_dir, tmp_path / "data")
    rng = random.Random(20261204)
    copy = tmp_path / "copy"
    missed = []
    for i in range(1000):
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(trail.directory, copy)
        name = TRAIL_FILE if i % 2 == 0 else CHECKPOINTS_FILE
        data = bytearray((copy / name).read_bytes())
        at = rng.randrange(len(data))
        data[at] = rng.choice([b for b in range(256) if b != data[at]])
        (copy / name).write_bytes(bytes(data))
        if verify_trail(copy).ok:
            missed.append((name, at))
    assert missed == []


def test_removed_reordered_or_foreign_entries_are_found(ca_dir: Path, tmp_path: Path):
    trail = written_trail(ca_dir, tmp_path / "data", batches=3)
    lines = (trail.directory / TRAIL_FILE).read_bytes().splitlines(keepends=True)

    def broken(trail_lines: list[bytes], ca: bytes | None = None) -> list[str]:
        copy = tmp_path / "copy"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(trail.directory, copy)
        (copy / TRAIL_FILE).write_bytes(b"".join(trail_lines))
        return verify_trail(copy, ca).breaks

    assert any("does not follow" in b for b in broken(lines[:2] + lines[3:]))
    assert any("entries were removed" in b for b in broken(lines[:-1]))
    assert any("does not follow" in b for b in broken([lines[1], lines[0], *lines[2:]]))
    other = tmp_path / "other-ca"
    pki.create_ca(other)
    assert any("not signed by the cluster CA" in b
               for b in broken(lines, (other / "ca.crt").read_bytes()))
    assert broken(lines, (ca_dir / "ca.crt").read_bytes()) == []


def test_a_checkpoint_signed_by_another_campus_is_found(ca_dir: Path, tmp_path: Path):
    trail = written_trail(ca_dir, tmp_path / "data", batches=1)
    trail.credentials = credentials(ca_dir, "yuecheng")  # a relay's key, say
    asyncio.run(trail.record("repair", "operator/oncall", "done"))
    ca = (ca_dir / "ca.crt").read_bytes()
    assert any("not by node/chaohui" in b for b in verify_trail(trail.directory, ca).breaks)


def test_a_torn_last_line_is_dropped_and_recorded_at_open(ca_dir: Path, tmp_path: Path):
    trail = written_trail(ca_dir, tmp_path / "data", batches=2)
    with (trail.directory / TRAIL_FILE).open("ab") as fh:
        fh.write(b'{"action":"rep')  # a crash in the middle of a write
    assert not verify_trail(trail.directory).ok
    again = AuditTrail(tmp_path / "data", "chaohui", trail.credentials)
    again.open()
    report = verify_trail(trail.directory)
    assert report.ok, report.breaks
    last = json.loads((trail.directory / TRAIL_FILE).read_bytes().splitlines()[-1])
    assert (last["n"], last["action"]) == (5, "torn-tail-dropped")


@pytest.mark.parametrize("chunk", [7, 64, 1 << 16])
def test_a_reopened_trail_continues_its_chain_from_the_files_end(
        ca_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int):
    """Open reads only the end of the files: in chunks smaller than a line, a
    line, or the whole file, it finds the same last entry, and cuts a torn one."""
    monkeypatch.setattr(node_audit, "TAIL_CHUNK", chunk)
    trail = written_trail(ca_dir, tmp_path / "data", batches=4)
    with (trail.directory / CHECKPOINTS_FILE).open("ab") as fh:
        fh.write(b'{"campus":"chao')
    again = AuditTrail(tmp_path / "data", "chaohui", trail.credentials)
    again.open()
    assert (again.entries, again.head) == (9, json.loads(
        (trail.directory / TRAIL_FILE).read_bytes().splitlines()[-1])["hash"])
    asyncio.run(again.record("repair", "operator/oncall", "done", table="patients", key=["x"]))
    report = verify_trail(trail.directory, (ca_dir / "ca.crt").read_bytes())
    assert report.ok, report.breaks
    assert (report.entries, report.signed_through) == (10, 10)


def test_a_trail_that_cannot_be_written_is_an_alert_not_an_error(ca_dir: Path,
                                                                  tmp_path: Path):
    trail = written_trail(ca_dir, tmp_path / "data", batches=1)
    shutil.rmtree(trail.directory)  # gone under the node
    (tmp_path / "data" / "audit").write_text("not a directory")
    asyncio.run(trail.record("repair", "operator/oncall", "done"))
    assert trail.failures == 1 and "audit trail" in trail.alert()


def test_audit_verify_and_query_on_a_copy(ca_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]):
    trail = written_trail(ca_dir, tmp_path / "data", batches=3)
    copy = tmp_path / "for-the-auditor"
    shutil.copytree(trail.directory, copy)
    assert main(["audit", "verify", "--path", str(copy), "--ca", str(ca_dir / "ca.crt"),
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["ok"], out["entries"], out["breaks"]) == (True, 6, [])
    key_file = tmp_path / "data" / "audit.key"
    assert main(["audit", "query", "--path", str(copy), "--table", "patients",
                 "--key", '["p-1"]', "--key-file", str(key_file), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["verified"] is True
    assert [(e["action"], e["who"], e["outcome"]) for e in found["entries"]] == [
        ("repair", "operator/oncall", "done")]
    assert main(["audit", "query", "--path", str(copy), "--table", "patients",
                 "--key", '["p-1"]']) == 2  # no key file: said, not guessed
    assert "--key-file" in capsys.readouterr().err
    data = bytearray((copy / TRAIL_FILE).read_bytes())
    data[40] ^= 0x01
    (copy / TRAIL_FILE).write_bytes(bytes(data))
    assert main(["audit", "verify", "--path", str(copy)]) == 1
    assert "BROKEN" in capsys.readouterr().out
