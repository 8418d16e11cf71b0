"""Decoding of the replication stream: CopyBoth framing and pgoutput (protocol 1).

Pure functions and small dataclasses, no I/O, so they are unit-testable
without a server. Column values arrive in text format and are turned into
canonical values by node.engines.postgres.values.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field

PG_EPOCH_OFFSET_US = 946_684_800_000_000  # 2000-01-01 - 1970-01-01, in microseconds


def lsn_to_str(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def str_to_lsn(text: str) -> int:
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def standby_status(write: int, flush: int, apply: int, reply: bool = False) -> bytes:
    now_us = int(time.time() * 1_000_000) - PG_EPOCH_OFFSET_US
    return b"r" + struct.pack("!QQQqB", write, flush, apply, now_us, 1 if reply else 0)


@dataclass(slots=True)
class XLogData:
    start: int
    end: int
    payload: memoryview


@dataclass(slots=True)
class Keepalive:
    end: int
    reply_requested: bool


def parse_copy_message(data: memoryview) -> XLogData | Keepalive | None:
    kind = data[0]
    if kind == ord("w"):
        start, end, _ = struct.unpack_from("!QQq", data, 1)
        return XLogData(start, end, data[25:])
    if kind == ord("k"):
        end, _, reply = struct.unpack_from("!QqB", data, 1)
        return Keepalive(end, bool(reply))
    return None


@dataclass(slots=True)
class Relation:
    relid: int
    schema: str
    name: str
    columns: list[str]
    type_oids: list[int]


@dataclass(slots=True)
class Begin:
    final_lsn: int
    commit_time: float
    xid: int


@dataclass(slots=True)
class Commit:
    commit_lsn: int
    end_lsn: int
    commit_time: float


@dataclass(slots=True)
class Origin:
    name: str


@dataclass(slots=True)
class RowMessage:
    op: str  # "I", "U", "D"
    relid: int
    new: list[str | None | bool] | None = None  # text values; None = NULL; False = unchanged
    old: list[str | None | bool] | None = None


@dataclass(slots=True)
class Truncate:
    relids: list[int] = field(default_factory=list)


UNCHANGED = False  # marker for an unchanged TOASTed value ('u')


class Reader:
    __slots__ = ("buf", "pos")

    def __init__(self, buf: memoryview) -> None:
        self.buf = buf
        self.pos = 0

    def byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def int16(self) -> int:
        (v,) = struct.unpack_from("!h", self.buf, self.pos)
        self.pos += 2
        return int(v)

    def int32(self) -> int:
        (v,) = struct.unpack_from("!i", self.buf, self.pos)
        self.pos += 4
        return int(v)

    def uint32(self) -> int:
        (v,) = struct.unpack_from("!I", self.buf, self.pos)
        self.pos += 4
        return int(v)

    def int64(self) -> int:
        (v,) = struct.unpack_from("!q", self.buf, self.pos)
        self.pos += 8
        return int(v)

    def uint64(self) -> int:
        (v,) = struct.unpack_from("!Q", self.buf, self.pos)
        self.pos += 8
        return int(v)

    def cstring(self) -> str:
        end = bytes(self.buf[self.pos :]).index(b"\0")
        s = bytes(self.buf[self.pos : self.pos + end]).decode()
        self.pos += end + 1
        return s

    def tuple(self) -> list[str | None | bool]:
        n = self.int16()
        out: list[str | None | bool] = []
        for _ in range(n):
            kind = chr(self.byte())
            if kind == "n":
                out.append(None)
            elif kind == "u":
                out.append(UNCHANGED)
            elif kind == "t":
                length = self.int32()
                out.append(bytes(self.buf[self.pos : self.pos + length]).decode())
                self.pos += length
            else:
                raise ValueError(f"unknown tuple column kind {kind!r}")
        return out


def _ts(pg_us: int) -> float:
    return (pg_us + PG_EPOCH_OFFSET_US) / 1_000_000


def parse_pgoutput(
    payload: memoryview,
) -> Begin | Commit | Origin | Relation | RowMessage | Truncate | None:
    r = Reader(payload)
    kind = chr(r.byte())
    if kind == "B":
        return Begin(r.uint64(), _ts(r.int64()), r.uint32())
    if kind == "C":
        r.byte()
        return Commit(r.uint64(), r.uint64(), _ts(r.int64()))
    if kind == "O":
        r.uint64()
        return Origin(r.cstring())
    if kind == "R":
        relid = r.uint32()
        schema, name = r.cstring(), r.cstring()
        r.byte()  # replica identity
        cols, oids = [], []
        for _ in range(r.int16()):
            r.byte()
            cols.append(r.cstring())
            oids.append(r.uint32())
            r.int32()
        return Relation(relid, schema, name, cols, oids)
    if kind == "I":
        relid = r.uint32()
        r.byte()  # 'N'
        return RowMessage("I", relid, new=r.tuple())
    if kind == "U":
        relid = r.uint32()
        marker = chr(r.byte())
        old = None
        if marker in ("K", "O"):
            old = r.tuple()
            marker = chr(r.byte())
        return RowMessage("U", relid, new=r.tuple(), old=old)
    if kind == "D":
        relid = r.uint32()
        r.byte()  # 'K' or 'O'
        return RowMessage("D", relid, old=r.tuple())
    if kind == "T":
        n = r.int32()
        r.byte()
        return Truncate([r.uint32() for _ in range(n)])
    return None  # 'Y' (type), 'M' (message): nothing to do


def insert_fields(data: bytes, pos: int) -> list[bytes | None] | None:
    """The column values of an Insert's tuple starting at ``pos`` (its column
    count), as the bytes sent; None for anything but text and NULL values
    (the general parser then reads the message)."""
    count = (data[pos] << 8) | data[pos + 1]
    pos += 2
    out: list[bytes | None] = []
    append = out.append
    for _ in range(count):
        kind = data[pos]
        if kind == 116:  # 't'
            end = pos + 5 + int.from_bytes(data[pos + 1:pos + 5], "big")
            append(data[pos + 5:end])
            pos = end
        elif kind == 110:  # 'n'
            append(None)
            pos += 1
        else:
            return None
    return out if pos == len(data) else None
