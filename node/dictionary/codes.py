"""Code maps: one campus's local codes to canonical codes and back (pure logic).

A CodeMap is built from the rows of the replicated map table
(ringsync.dictionaries) and never changed in place: a newer map replaces it
(node.dictionary.translate swaps them), so a reader on another thread always
sees one whole map.

* ``canonical(campus, dictionary, code)``: what a campus's local code means
  on the ring. A local code the campus has not mapped travels as an
  *unmapped marker* naming the campus and the code, so nothing is lost: a
  receiving campus parks the change, and translates it once the origin's map
  has the code (``dlq retry``).
* ``local(campus, dictionary, canonical, keep)``: the campus's local code for
  a canonical code, or ``Unmapped`` saying exactly which row of the map table
  to add. ``keep``: the local code the row holds now; when it means the same
  canonical code it stays (a lossy map does not rewrite a row's code when
  another column of it changes).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from node.codec import escape_peer_text
from ringsync.errors import RingsyncError

MAP_COLUMNS = ("campus", "dictionary", "local_code", "canonical_code")
PREFERRED = "preferred"
# A local code with no canonical code travels as this prefix, its campus, ":"
# and the code. Campus names hold no ":"; canonical codes may not start with it.
UNMAPPED_PREFIX = "ringsync-unmapped:"


class Unmapped(RingsyncError):
    """A code this campus cannot translate; the message names the campus, the
    dictionary, the code and the row of the map table that would translate it."""


def unmapped_marker(campus: str, code: str) -> str:
    return f"{UNMAPPED_PREFIX}{campus}:{code}"


def parse_marker(value: str) -> tuple[str, str] | None:
    """(origin campus, local code) of an unmapped marker; None for a canonical code."""
    if not value.startswith(UNMAPPED_PREFIX):
        return None
    campus, sep, code = value[len(UNMAPPED_PREFIX):].partition(":")
    return (campus, code) if sep else None


@dataclass(frozen=True)
class MapRow:
    campus: str
    dictionary: str
    local_code: str
    canonical_code: str
    preferred: bool = False


def map_row(columns: Sequence[str], row: Sequence[Any]) -> MapRow | str:
    """A map table row as a MapRow, or why it cannot be one (an error line)."""
    values = dict(zip(columns, row, strict=True))
    fields = [values.get(c) for c in MAP_COLUMNS]
    if not all(isinstance(v, str) and v for v in fields):
        shown = ", ".join(f"{c}={escape_peer_text(v, 40)}" for c, v in zip(
            MAP_COLUMNS, fields, strict=True))
        return f"map row ({shown}) is ignored: every one of {', '.join(MAP_COLUMNS)} " \
               f"must be non-empty text"
    campus, dictionary, local, canonical = (str(v) for v in fields)
    if canonical.startswith(UNMAPPED_PREFIX):
        return (f"map row ({campus}, {dictionary}, {escape_peer_text(local, 40)}) is ignored: "
                f"a canonical code may not start with {UNMAPPED_PREFIX!r}")
    preferred = values.get(PREFERRED)
    return MapRow(campus, dictionary, local, canonical, bool(preferred))


@dataclass
class CodeMap:
    """Every campus's maps, as read from the map table (see the module docstring)."""

    lossy: frozenset[str] = frozenset()
    table: str = "code_maps"  # the map table's name, for messages
    forward: dict[tuple[str, str, str], str] = field(default_factory=dict)
    rows: dict[tuple[str, str, str], MapRow] = field(default_factory=dict)
    reverse: dict[tuple[str, str, str], list[MapRow]] = field(default_factory=dict)
    ignored: list[str] = field(default_factory=list)  # rows that are not map rows, why
    errors: list[str] = field(default_factory=list)   # those, and ambiguous codes

    @classmethod
    def build(cls, rows: Iterable[MapRow | str], lossy: frozenset[str], table: str) -> CodeMap:
        out = cls(lossy, table)
        for row in rows:
            if isinstance(row, str):
                out.ignored.append(row)
                continue
            out.rows[(row.campus, row.dictionary, row.local_code)] = row
        out._index()
        return out

    def _index(self) -> None:
        self.errors = list(self.ignored[-20:])
        for key, row in self.rows.items():
            self.forward[key] = row.canonical_code
            self.reverse.setdefault((row.campus, row.dictionary, row.canonical_code),
                                    []).append(row)
        for (campus, dictionary, canonical), rows in sorted(self.reverse.items()):
            if len(rows) > 1 and dictionary not in self.lossy:
                codes = ", ".join(sorted(escape_peer_text(r.local_code, 40) for r in rows))
                self.errors.append(
                    f"campus {campus} maps local codes {codes} of {dictionary} to one canonical "
                    f"code {escape_peer_text(canonical, 40)}, but {dictionary} is not declared "
                    f"lossy: declare it in dictionaries.lossy and mark the code it should get "
                    f"back as preferred, or map each code to its own canonical code")

    def changed(self, steps: Iterable[tuple[tuple[str, str, str] | None, MapRow | str | None]],
                ) -> CodeMap:
        """A new map: this one with each step applied in order, a step being
        (key of a row removed or None, row added or None)."""
        rows = dict(self.rows)
        errors = list(self.ignored)
        for gone, row in steps:
            if gone is not None:
                rows.pop(gone, None)
            if isinstance(row, str):
                errors.append(row)
            elif row is not None:
                rows[(row.campus, row.dictionary, row.local_code)] = row
        out = CodeMap(self.lossy, self.table, rows=rows, ignored=errors)
        out._index()
        return out

    def entries(self) -> int:
        return len(self.rows)

    def canonical(self, campus: str, dictionary: str, code: str) -> str | None:
        """The canonical code of a campus's local code; None when unmapped."""
        return self.forward.get((campus, dictionary, code))

    def local(self, campus: str, dictionary: str, canonical: str, origin: str,
              keep: str | None = None) -> str:
        """``campus``'s local code for a value that arrived (a canonical code or
        an unmapped marker) from ``origin``; raises Unmapped."""
        marker = parse_marker(canonical)
        if marker is not None:
            source, code = marker
            if source == campus:  # our own code, unmapped when it left: it is ours
                return code
            found = self.canonical(source, dictionary, code)
            if found is None:
                raise Unmapped(
                    f"campus {source} has no canonical code for its local code "
                    f"{escape_peer_text(code, 60)!r} of {dictionary}; at {source}, add it: "
                    f"INSERT INTO {self.table} (campus, dictionary, local_code, canonical_code) "
                    f"VALUES ('{source}', '{dictionary}', '{escape_peer_text(code, 60)}', "
                    f"'<canonical code>'), then retry this dead letter (ringsync ctl dlq retry)")
            canonical = found
        if keep is not None and self.canonical(campus, dictionary, keep) == canonical:
            return keep
        rows = self.reverse.get((campus, dictionary, canonical), [])
        if len(rows) == 1:
            return rows[0].local_code
        preferred = [r for r in rows if r.preferred]
        if len(preferred) == 1:
            return preferred[0].local_code
        code = escape_peer_text(canonical, 60)
        if not rows:
            raise Unmapped(
                f"campus {campus} has no local code for canonical code {code!r} of "
                f"{dictionary} (a change from {origin}); add it: INSERT INTO {self.table} "
                f"(campus, dictionary, local_code, canonical_code) VALUES ('{campus}', "
                f"'{dictionary}', '<local code>', '{code}'), then retry this dead letter "
                f"(ringsync ctl dlq retry)")
        codes = ", ".join(sorted(escape_peer_text(r.local_code, 40) for r in rows))
        raise Unmapped(
            f"campus {campus} maps local codes {codes} of {dictionary} to canonical code "
            f"{code!r} and {'marks several' if preferred else 'marks none'} preferred; mark "
            f"exactly one preferred (the code that canonical code becomes here), then retry "
            f"this dead letter (ringsync ctl dlq retry)")
