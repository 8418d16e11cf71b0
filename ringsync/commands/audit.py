"""`ringsync audit`: check and search a campus's audit trail (ringsync.audit).

    ringsync audit verify --path DIR [--ca CA.pem] [--json]
    ringsync audit query  --path DIR [--table T --key JSON --key-file F]
                          [--who NAME] [--action A] [--since ISO] [--json]

``--path`` is a trail directory: ``<data_dir>/audit/`` at a node, or a copy
of it; no node need run. ``verify`` re-derives every hash and checks every
signed checkpoint (with ``--ca``, also that each was signed by that
campus's node certificate from the cluster CA); it exits 0 when the trail
is intact and 1 on any break, each named by file and line. ``--json``
prints {"path", "campus", "ok", "entries", "checkpoints", "head",
"signed_through", "unsigned", "breaks"}.

``query`` lists the entries that match every filter given, oldest first,
after verifying the trail (its JSON: {"verified", "breaks", "entries"}). A
row is found by its keyed hash, so ``--table`` and ``--key`` (its primary
key as a JSON list, e.g. '["p-1001"]') need ``--key-file``: the node's
``<data_dir>/audit.key``, which a copy of the trail does not carry.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ringsync.audit import key_hash, read_entries, verify_trail
from ringsync.errors import ConfigError


def add_parser(sub: Any) -> None:
    audit = sub.add_parser("audit", help="verify and search a campus's audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check a trail's hash chain and signed "
                                                 "checkpoints; exit 1 on any break")
    verify.add_argument("--path", type=Path, required=True,
                        help="the trail directory (<data_dir>/audit, or a copy)")
    verify.add_argument("--ca", type=Path, default=None,
                        help="the cluster CA certificate: also check who signed")
    verify.add_argument("--json", action="store_true", help="print JSON")
    query = audit_sub.add_parser("query", help="the entries that match, oldest first")
    query.add_argument("--path", type=Path, required=True,
                       help="the trail directory (<data_dir>/audit, or a copy)")
    query.add_argument("--table", default="", help="a replicated table")
    query.add_argument("--key", default="", help="with --table: the row's primary key, "
                                                 "a JSON list")
    query.add_argument("--key-file", type=Path, default=None,
                       help="with --key: the audit key (<data_dir>/audit.key)")
    query.add_argument("--who", default="", help="the identity that acted")
    query.add_argument("--action", default="", help="repair, resolve-conflict, "
                                                    "dead-letter, revocations, denied, ...")
    query.add_argument("--since", default="", help="entries at or after this UTC time "
                                                   "(ISO 8601, e.g. 2026-12-04T08:00)")
    query.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    if args.audit_command == "verify":
        return _verify(args)
    return _query(args)


def _read(path: Path | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None


def _verify(args: argparse.Namespace) -> int:
    try:
        report = verify_trail(args.path, _read(args.ca, "the CA certificate"))
    except ValueError as e:  # a --ca that is no certificate
        raise ConfigError(f"{args.ca} is not a PEM certificate ({e})") from None
    if args.json:
        print(json.dumps(report.to_json_obj(), indent=2))
    else:
        state = "intact" if report.ok else "BROKEN"
        print(f"{report.path}: {state}; campus {report.campus or '-'}, {report.entries} "
              f"entries, {report.checkpoints} checkpoints, signed through entry "
              f"{report.signed_through} ({report.unsigned} after it)")
        for why in report.breaks:
            print(f"  {why}")
    return 0 if report.ok else 1


def _query(args: argparse.Namespace) -> int:
    wanted: dict[str, str] = {}
    if args.key or args.table:
        if not (args.key and args.table):
            raise ConfigError("--table and --key go together")
        secret = _read(args.key_file, "the audit key") if args.key_file else None
        if secret is None:
            raise ConfigError("--key needs --key-file (the node's <data_dir>/audit.key): "
                              "the trail names rows only by a keyed hash")
        try:
            key = json.loads(args.key)
        except ValueError:
            raise ConfigError(f"--key {args.key!r} is not JSON; give the primary key as a "
                              f"JSON list, e.g. '[\"p-1001\"]'") from None
        wanted["key_hash"] = key_hash(secret, args.table, key)
        wanted["table"] = args.table
    if args.who:
        wanted["who"] = args.who
    report = verify_trail(args.path)
    if not (args.path / "trail.jsonl").exists():
        raise ConfigError(report.breaks[0])
    found = [e for e in read_entries(args.path)
             if all(e.get(k) == v for k, v in wanted.items())
             and (not args.action or str(e.get("action", "")).startswith(args.action))
             and (not args.since or str(e.get("at", "")) >= args.since)]
    if args.json:
        print(json.dumps({"verified": report.ok, "breaks": report.breaks, "entries": found},
                         indent=2))
    else:
        if not report.ok:
            print(f"WARNING: the trail does not verify ({len(report.breaks)} breaks; "
                  f"`ringsync audit verify --path {args.path}`)")
        for e in found:
            where = f" {e['table']} {e.get('key_hash', '')}" if e.get("table") else ""
            print(f"{e.get('n'):>6} {e.get('at')} {e.get('campus')} {e.get('action')} by "
                  f"{e.get('who')}:{where} {e.get('outcome')}")
        print(f"{len(found)} entries")
    return 0
