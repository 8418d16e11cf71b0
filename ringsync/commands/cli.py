"""The `ringsync` command: one entry point, subcommands imported lazily.

    ringsync demo      a local multi-campus cluster, workload and console
    ringsync node      run one campus node
    ringsync console   the operator TUI
    ringsync ctl       scripted calls (status, verify, conflicts, dlq, route, switchover,
                       switchback, failback) with --json
    ringsync drill     fault drills that measure RTO, RPO and convergence
    ringsync pki       create a CA and issue node/operator/viewer certificates
    ringsync bench     throughput and lag beside PostgreSQL's native replication
    ringsync audit     verify and search a campus's audit trail (a copy will do)

This module sits above node and console; it is the only place that knows both.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ringsync.commands import audit as audit_command
from ringsync.commands.ctl import conflicts as ctl_conflicts
from ringsync.commands.ctl import dlq as ctl_dlq
from ringsync.commands.ctl import dr as ctl_dr
from ringsync.commands.ctl import repair as ctl_repair
from ringsync.commands.ctl import revocations as ctl_revocations
from ringsync.commands.ctl import verify as ctl_verify
from ringsync.errors import RingsyncError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringsync", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run a local multi-campus cluster with a workload")
    demo.add_argument("--campuses", type=int, default=4, help="number of campuses (2-8)")
    demo.add_argument("--data-dir", type=Path, default=None,
                      help="where configs, certificates and databases go (default: a temp dir)")
    demo.add_argument("--rate", type=float, default=20.0,
                      help="workload transactions per second, per campus (default 20)")
    demo.add_argument("--conflict-rate", type=float, default=0.0,
                      help="share (0-1) of transactions that edit recent rows of any campus, "
                           "concurrently with the others: conflicts (default 0)")
    demo.add_argument("--headless", action="store_true",
                      help="no console: run, converge, print one JSON report")
    demo.add_argument("--duration", type=float, default=20.0,
                      help="headless: seconds of workload (default 20)")
    demo.add_argument("--engine", choices=("sqlite", "postgres", "mariadb", "mixed"),
                      default="sqlite",
                      help="campus databases: SQLite (default), PostgreSQL clusters made with "
                           "initdb, MariaDB servers made with mariadb-install-db, or mixed "
                           "(PostgreSQL at the large campuses, MariaDB at one when it is "
                           "installed and there are 3 campuses or more, SQLite at the smallest)")
    demo.add_argument("--dictionaries", action=argparse.BooleanOptionalAction, default=True,
                      help="campuses order lab tests by local codes of their own, mapped to "
                           "canonical codes on the ring through the code_maps table (default: "
                           "on; --no-dictionaries: every campus uses the canonical codes)")
    demo.add_argument("--satellites", type=int, default=0,
                      help="add N SQLite satellites: leaves hanging from the ring's campuses "
                           "(docs/leaves.md; default 0)")
    demo.add_argument("--satellite-route", default="all",
                      help="satellites' route: all (every table and row; they write too) or "
                           "subset (their parent's and their own patients and orders, by CEL "
                           "filters; they only read)")
    demo.add_argument("--keep-databases", action="store_true",
                      help="headless: leave the PostgreSQL and MariaDB servers running for "
                           "inspection")
    demo.add_argument("--no-etcd", action="store_true",
                      help="do not start etcd: no routing map changes, automatic failover off")
    demo.add_argument("--stop", action="store_true",
                      help="stop everything a demo left running in --data-dir, then exit")

    node = sub.add_parser("node", help="run one campus node")
    node.add_argument("--config", type=Path, required=True, help="the node's TOML file")

    console = sub.add_parser("console", help="the operator console (TUI)")
    console.add_argument("--cluster", type=Path, required=True, help="cluster.toml")

    ctl = sub.add_parser("ctl", help="scripted calls to the nodes")
    ctl.add_argument("--cluster", type=Path, required=True, help="cluster.toml")
    ctl_sub = ctl.add_subparsers(dest="ctl_command", required=True)
    status = ctl_sub.add_parser("status", help="status of every node and link")
    status.add_argument("--json", action="store_true", help="print JSON")
    ctl_verify.add_parser(ctl_sub)
    ctl_repair.add_parser(ctl_sub)
    ctl_conflicts.add_parser(ctl_sub)
    ctl_dlq.add_parser(ctl_sub)
    ctl_dr.add_parser(ctl_sub)
    ctl_revocations.add_parser(ctl_sub)

    bench = sub.add_parser("bench", help="measure replication beside PostgreSQL's native "
                                          "logical replication")
    from ringsync.commands.bench.run import add_arguments as add_bench_arguments

    add_bench_arguments(bench)

    drill = sub.add_parser("drill", help="fault drills on a local cluster: RTO, RPO, "
                                         "convergence, two writers")
    from ringsync.commands.drill.run import add_arguments as add_drill_arguments

    add_drill_arguments(drill)

    audit_command.add_parser(sub)
    pki = sub.add_parser("pki", help="certificate authority and certificates")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True)
    init = pki_sub.add_parser("init", help="create a new cluster CA")
    init.add_argument("--dir", type=Path, required=True)
    init.add_argument("--days", type=int, default=3650)
    issue = pki_sub.add_parser("issue", help="issue a certificate signed by the CA")
    issue.add_argument("--dir", type=Path, required=True, help="the CA's directory")
    issue.add_argument("--role", choices=("node", "operator", "viewer", "etcd"), required=True,
                       help="etcd: a member of the DR etcd cluster ([dr] etcd_tls)")
    issue.add_argument("--name", required=True, help="campus name (node) or person/script name")
    issue.add_argument("--host", action="append", default=[],
                       help="extra DNS name or IP for a node certificate (repeatable)")
    issue.add_argument("--days", type=int, default=825)
    issue.add_argument("--force", action="store_true",
                       help="replace an existing certificate and key of that name")
    renew = pki_sub.add_parser("renew", help="a new certificate and key for the identity "
                                             "and hosts of an existing one, in its place")
    renew.add_argument("--dir", type=Path, required=True, help="the CA's directory")
    renew.add_argument("--cert", type=Path, required=True, help="the certificate to renew")
    renew.add_argument("--days", type=int, default=825)
    revoke = pki_sub.add_parser("revoke", help="add a certificate to the CA's revocation "
                                               "list (crl.pem); push it with ctl revocations")
    revoke.add_argument("--dir", type=Path, required=True, help="the CA's directory")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", type=Path, help="the certificate to revoke")
    which.add_argument("--serial", help="or its serial number, in hex (as pki renew prints)")
    return p


def _pki(args: argparse.Namespace) -> int:
    from ringsync import pki

    if args.pki_command == "init":
        path = pki.create_ca(args.dir, days=args.days)
        print(f"created CA {path}")
    elif args.pki_command == "renew":
        from ringsync.revocation import serial_of

        old = serial_of(args.cert.read_bytes()) if args.cert.exists() else None
        cert, key = pki.renew(args.dir, args.cert, days=args.days)
        print(f"renewed {cert} (key {key}); a node using them takes them without a restart. "
              f"Once every user has the new one, revoke the old one: `ringsync pki revoke "
              f"--dir {args.dir} --serial {old or 0:x}`")
    elif args.pki_command == "revoke":
        from ringsync.revocation import revoke

        crl, held = revoke(args.dir, args.cert, serial=args.serial)
        print(f"revoked {args.cert or args.serial}: {crl} is list number {held.number} "
              f"({len(held.serials)} certificate(s)); push it to every node with "
              f"`ringsync ctl --cluster cluster.toml revocations --push {crl}`")
    else:
        cert, key = pki.issue(args.dir, args.role, args.name, tuple(args.host), days=args.days,
                              force=args.force)
        print(f"issued {args.role} certificate for {args.name}: {cert} (key {key})")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "node":
            from node.main import run as run_node

            return run_node(args.config)
        if args.command == "ctl":
            from ringsync.commands.ctl import status as ctl
            from ringsync.config import load_cluster

            if args.ctl_command == "dlq":
                return ctl_dlq.run(load_cluster(args.cluster, need_client_tls=True), args)
            if args.ctl_command in ("route", "switchover", "switchback", "failback"):
                return ctl_dr.run(load_cluster(args.cluster), args)
            if args.ctl_command == "repair":
                return ctl_repair.run(load_cluster(args.cluster, need_client_tls=True), args)
            if args.ctl_command == "verify":
                return ctl_verify.run(load_cluster(args.cluster, need_client_tls=True), args)
            if args.ctl_command == "revocations":
                return ctl_revocations.run(load_cluster(args.cluster, need_client_tls=True),
                                           args)
            if args.ctl_command == "conflicts":
                return ctl_conflicts.run(load_cluster(args.cluster, need_client_tls=True), args)
            return ctl.run(load_cluster(args.cluster, need_client_tls=True), args.ctl_command,
                           args.json)
        if args.command == "console":
            from console.app import run_console
            from ringsync.config import load_cluster

            return run_console(load_cluster(args.cluster, need_client_tls=True))
        if args.command == "pki":
            return _pki(args)
        if args.command == "audit":
            return audit_command.run(args)
        if args.command == "bench":
            from ringsync.commands.bench.run import run_bench

            raw = list(argv if argv is not None else sys.argv[1:])
            return run_bench(args, raw[raw.index("bench") + 1:])
        if args.command == "drill":
            from ringsync.commands.drill.run import run_drill

            return run_drill(args)
        if args.command == "demo":
            from ringsync.commands.demo.runner import run_demo

            return run_demo(args)
    except RingsyncError as e:
        print(f"ringsync {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
