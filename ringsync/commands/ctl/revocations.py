"""`ringsync ctl revocations`: the CA's revocation list at every node, and pushing it.

    ringsync ctl --cluster cluster.toml revocations [--json]
    ringsync ctl --cluster cluster.toml revocations --push pki/crl.pem [--json]   (operators)

``ringsync pki revoke`` adds a certificate to the list at the CA; ``--push``
sends it to every node, ring members and leaves, each of which takes it if
the CA signed it and it is not older than the list it holds, keeps it in
its ``[tls] crl`` file, and from then on refuses the revoked certificates
and ends their open streams. A node that is down misses the push: push
again when it is back, or copy the file there (a node re-reads it within a
second). ``--json`` prints {"nodes": [{"campus", "number", "revoked",
"issued_at", "certificate_expires_at", "error"}]}; exit 1 when a node did
not answer or refused the list.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import grpc

from ringsync.client import ClusterClient, describe_rpc_error
from ringsync.config import ClusterConfig
from ringsync.errors import ConfigError


def add_parser(ctl_sub: Any) -> None:
    r = ctl_sub.add_parser("revocations", help="the CA's revocation list at every node; "
                                               "--push sends one (operators)")
    r.add_argument("--push", type=Path, default=None, metavar="CRL",
                   help="a revocation list made by `ringsync pki revoke` (crl.pem)")
    r.add_argument("--json", action="store_true", help="print JSON")


def run(cluster: ClusterConfig, args: argparse.Namespace) -> int:
    pem = None
    if args.push is not None:
        try:
            pem = args.push.read_bytes()
        except OSError as e:
            raise ConfigError(f"cannot read {args.push}: {e.strerror}") from None
    rows = asyncio.run(_each_node(cluster, pem))
    if args.json:
        print(json.dumps({"nodes": rows}, indent=2))
    else:
        print(f"{'CAMPUS':<16}{'LIST':>6}{'REVOKED':>9}  {'SIGNED':<22}{'CERT EXPIRES':<22}ERROR")
        for r in rows:
            print(f"{r['campus']:<16}{r['number'] or '-':>6}{r['revoked']:>9}  "
                  f"{r['issued_at'] or '-':<22}{r['certificate_expires_at'] or '-':<22}"
                  f"{r['error'] or ''}")
    return 1 if any(r["error"] for r in rows) else 0


async def _each_node(cluster: ClusterConfig, pem: bytes | None) -> list[dict[str, Any]]:
    client = ClusterClient(cluster)
    try:
        return list(await asyncio.gather(*(_one(client, c, pem) for c in cluster.origins)))
    finally:
        await client.close()


async def _one(client: ClusterClient, campus: str, pem: bytes | None) -> dict[str, Any]:
    row: dict[str, Any] = {"campus": campus, "number": 0, "revoked": 0, "issued_at": None,
                           "certificate_expires_at": None, "error": None}
    try:
        if pem is not None:
            held = await client.publish_revocations(campus, pem)
        else:
            reply = await client.status_of(campus)
            if reply.status is None:
                row["error"] = reply.error
                return row
            held = reply.status.revocations
    except grpc.aio.AioRpcError as e:
        row["error"] = describe_rpc_error(e)
        return row
    row.update(number=held.number, revoked=held.revoked, issued_at=_when(held.issued_at),
               certificate_expires_at=_when(held.certificate_expires_at),
               error=held.error or None)
    return row


def _when(unix: float) -> str | None:
    return (dt.datetime.fromtimestamp(unix, dt.UTC).isoformat(timespec="seconds")
            if unix else None)
