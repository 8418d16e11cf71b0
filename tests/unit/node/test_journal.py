"""The journal: gapless per-origin appends, duplicates, chunks, restart, prune."""

from __future__ import annotations

from pathlib import Path

import pytest

from node.codec import build_frame
from node.model import CapturedChunk, Change, Op, TableShape
from node.replication.framecheck import FrameRefused
from node.replication.journal import Journal
from ringsync.errors import JournalError, ProtocolError
from ringsync.v1 import values_pb2 as pb

SHAPES = {"t": TableShape("t", ("id", "v"), (0,))}


def frame(origin: str, seq: int, chunk: int = 0, final: bool = True) -> tuple[pb.TxnFrame, bytes]:
    f = build_frame(origin, seq, chunk, final, 1.0,
                    [Change("t", Op.INSERT, new=(f"{origin}{seq}.{chunk}", seq))], SHAPES)
    return f, f.SerializeToString()


def local(n: int, position: int, final: bool = True) -> CapturedChunk:
    return CapturedChunk([Change("t", Op.INSERT, new=(f"l{n}", n))], final, 1.0, position)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    j = Journal(tmp_path / "journal.db", "a")
    j.open()
    yield j
    j.close()


def test_local_capture_gets_gapless_sequence_and_position(journal: Journal) -> None:
    assert journal.append_local([local(1, 10), local(2, 12)], SHAPES) == 2
    assert journal.vector() == {"a": 2}
    assert journal.capture_position == 12
    assert journal.transactions == 2


def test_remote_duplicates_are_skipped(journal: Journal) -> None:
    assert journal.append_remote([frame("b", 1), frame("b", 2)]) == 2
    assert journal.append_remote([frame("b", 1), frame("b", 2), frame("b", 3)]) == 1
    assert journal.vector() == {"b": 3}


def test_remote_gap_is_refused_and_nothing_of_the_batch_is_stored(journal: Journal) -> None:
    journal.append_remote([frame("b", 1)])
    with pytest.raises(ProtocolError, match="gap"):
        journal.append_remote([frame("c", 1), frame("b", 3)])
    assert journal.vector() == {"b": 1}
    assert [e.origin for e in journal.entries_after(0, 100)] == ["b"]


def test_own_frame_coming_back_unchanged_is_ignored(journal: Journal) -> None:
    journal.append_local([local(1, 1)], SHAPES)
    (own,) = journal.entries_after(0, 10)
    assert journal.append_remote([(pb.TxnFrame.FromString(own.body), own.body)]) == 0


def test_own_origin_differing_or_beyond_the_head_is_refused(journal: Journal) -> None:
    journal.append_local([local(1, 1)], SHAPES)
    with pytest.raises(FrameRefused) as e:
        journal.append_remote([frame("a", 1)])
    assert e.value.kind == "forged_duplicate" and "own journaled frame" in str(e.value)
    with pytest.raises(FrameRefused) as e:
        journal.append_remote([frame("a", 2)])
    assert e.value.kind == "own_origin" and e.value.alert
    assert journal.vector() == {"a": 1}


def test_duplicate_with_other_content_is_refused_with_an_alert(journal: Journal) -> None:
    journal.append_remote([frame("b", 1), frame("b", 2)])
    forged = build_frame("b", 1, 0, True, 1.0, [Change("t", Op.INSERT, new=("x", 9))], SHAPES)
    with pytest.raises(FrameRefused) as e:
        journal.append_remote([frame("b", 3), (forged, forged.SerializeToString())])
    assert e.value.kind == "forged_duplicate" and "b/1 chunk 0" in e.value.alert
    assert journal.vector() == {"b": 2}  # nothing of the batch is stored
    # the same frame twice in one batch, the second different: refused too
    with pytest.raises(FrameRefused):
        journal.append_remote([frame("b", 3), (build_frame(
            "b", 3, 0, True, 2.0, [], SHAPES), b"\x10")])
    # an identical re-delivery is still a harmless skip
    assert journal.append_remote([frame("b", 1), frame("b", 2), frame("b", 3)]) == 1


def test_journal_from_before_digests_is_migrated_and_compares_bodies(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "old.db"
    j = Journal(path, "a")
    j.open()
    j.append_remote([frame("b", 1)])
    j.close()
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE frames DROP COLUMN digest")
    conn.commit()
    conn.close()
    j = Journal(path, "a")
    j.open()  # adds the column back; the old row has no digest
    assert j.conn.execute("SELECT digest FROM frames").fetchone() == (None,)
    assert j.append_remote([frame("b", 1)]) == 0
    forged = build_frame("b", 1, 0, True, 1.0, [], SHAPES)
    with pytest.raises(FrameRefused):
        j.append_remote([(forged, forged.SerializeToString())])
    j.close()


def test_chunked_transaction_completes_only_on_final_frame(journal: Journal) -> None:
    journal.append_remote([frame("b", 1, 0, final=False), frame("b", 1, 1, final=False)])
    assert journal.vector() == {}
    # re-delivery from the start of the transaction skips what is held
    assert journal.append_remote([frame("b", 1, 0, False), frame("b", 1, 1, False),
                                  frame("b", 1, 2, True)]) == 1
    assert journal.vector() == {"b": 1}
    assert len(list(journal.iter_frames("b", 1))) == 3


def test_state_survives_reopen(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.db", "a")
    j.open()
    j.append_local([local(1, 7)], SHAPES)
    j.append_remote([frame("b", 1), frame("b", 2, 0, final=False)])
    j.close()
    j2 = Journal(tmp_path / "j.db", "a")
    j2.open()
    assert j2.vector() == {"a": 1, "b": 1}
    assert j2.capture_position == 7
    assert j2.append_remote([frame("b", 2, 0, False), frame("b", 2, 1, True)]) == 1
    assert j2.vector() == {"a": 1, "b": 2}
    j2.close()


def test_start_pos_finds_first_missing_frame(journal: Journal) -> None:
    journal.append_remote([frame("b", 1), frame("c", 1), frame("b", 2), frame("c", 2)])
    pos = journal.start_pos({"b": 1, "c": 0})
    origins = [(e.origin, e.seq) for e in journal.entries_after(pos, 100)]
    assert origins[0] == ("c", 1)
    assert ("b", 2) in origins and ("b", 1) not in origins


def test_prune_drops_only_what_everyone_holds_and_start_pos_then_refuses(
    journal: Journal,
) -> None:
    journal.append_remote([frame("b", s) for s in range(1, 6)])
    assert journal.prune({"b": 3}) == 3
    assert journal.transactions == 2
    assert [e.seq for e in journal.entries_after(0, 100)] == [4, 5]
    with pytest.raises(JournalError, match="re-synced"):
        journal.start_pos({"b": 1})
    journal.start_pos({"b": 3})  # still fine


def test_new_journal_is_uninitialized_until_it_adopts_a_vector(tmp_path: Path) -> None:
    j = Journal(tmp_path / "journal.db", "a")
    j.open()
    assert not j.initialized
    j.adopt({"a": 5, "b": 7, "c": 0})
    assert j.initialized and j.vector() == {"a": 5, "b": 7}
    assert j.append_local([local(1, 10)], SHAPES) == 1
    assert j.vector()["a"] == 6, "a rebuilt campus continues its own sequence"
    assert j.append_remote([frame("b", 8)]) == 1
    with pytest.raises(ProtocolError, match="gap"):
        j.append_remote([frame("c", 2)])
    j.close()
    again = Journal(tmp_path / "journal.db", "a")
    again.open()
    try:
        assert again.initialized and again.vector() == {"a": 6, "b": 8}
        with pytest.raises(JournalError, match="already initialized"):
            again.adopt({})
    finally:
        again.close()


def test_local_seq_through_counts_own_transactions_up_to_a_capture_position(
        journal: Journal) -> None:
    journal.adopt({"a": 2})  # two earlier transactions, not held as frames
    journal.append_local([local(1, 10), local(2, 20, final=False), local(3, 25), local(4, 30)],
                         SHAPES)
    journal.append_remote([frame("b", 1)])
    assert journal.vector()["a"] == 5
    assert [journal.local_seq_through(p) for p in (5, 10, 20, 25, 30, 99)] == [2, 3, 3, 4, 5, 5]


def test_a_joiner_keeps_the_donors_backlog_and_serves_it_after_adopting(tmp_path: Path) -> None:
    donor = Journal(tmp_path / "donor.db", "d")
    donor.open()
    donor.adopt({})
    donor.append_remote([frame("b", 1), frame("b", 2), frame("c", 1)])
    backlog = [body for _, body in donor.held_upto({"b": 1, "c": 1}, 0, 100) if body]
    donor.close()
    joiner = Journal(tmp_path / "joiner.db", "j")
    joiner.open()
    joiner.add_backlog([frame("b", 9)])  # an abandoned attempt …
    joiner.discard_backlog()               # … is forgotten before the next one
    joiner.add_backlog([(pb.TxnFrame.FromString(b), b) for b in backlog])
    joiner.adopt({"b": 1, "c": 1})
    assert joiner.transactions == 2
    # a successor that holds nothing can be served from the backlog
    assert [(e.origin, e.seq) for e in joiner.entries_after(joiner.start_pos({}), 10)] == [
        ("b", 1), ("c", 1)]
    assert joiner.append_remote([frame("b", 2)]) == 1
    joiner.close()


def test_acked_position_covers_exactly_the_acknowledged_local_transactions(
        journal: Journal) -> None:
    journal.adopt({"a": 2})  # seqs 1 and 2: not held as frames (as if pruned)
    journal.append_local([local(1, 10), local(2, 20, final=False), local(3, 25), local(4, 30)],
                         SHAPES)  # seqs 3 (10), 4 (25, in two chunks), 5 (30)
    assert journal.acked_position(5) == journal.capture_position == 30
    assert journal.acked_position(4) == 25
    assert journal.acked_position(3) == 10
    # Seq 2's frame is gone: everything before the first unacknowledged commit.
    assert journal.acked_position(2) == 9
    assert journal.acked_position(0) == 9
