"""The routing map as an operator sees it: the document `ringsync ctl route`
prints (and --json emits), read from etcd, or the static map with DR off;
and ``open_store``, the etcd connection the operator's commands use.
"""

from __future__ import annotations

from typing import Any

from ringsync.config import ClusterConfig, TLSFiles
from ringsync.dr.routes import Route, static_routes
from ringsync.dr.store import DRStore, EtcdError
from ringsync.errors import RingsyncError


def open_store(cluster: ClusterConfig) -> DRStore:
    if not cluster.dr.enabled:
        raise RingsyncError(
            f"disaster recovery is off in {cluster.path} (no [dr] etcd endpoints): every campus "
            f"serves its own users and nothing can move; see docs/dr.md "
            f"(\"Who serves whom\")")
    return DRStore(cluster.name, cluster.dr.etcd, tls=etcd_tls(cluster))


def etcd_tls(cluster: ClusterConfig) -> TLSFiles | None:
    """The certificate a client of the cluster file presents to etcd ([client]),
    with ``[dr] etcd_tls``; None without."""
    if not cluster.dr.etcd_tls:
        return None
    if cluster.client_tls is None:
        raise RingsyncError(f"{cluster.path} says [dr] etcd_tls = true but has no [client] "
                            f"certificate to present to etcd; add [client] ca, cert and key")
    return cluster.client_tls



async def routes_of(cluster: ClusterConfig) -> dict[str, Any]:
    if not cluster.dr.enabled:
        return {"dr": False, "failover": "off: no etcd configured",
                "routes": [r.to_dict() for r in static_routes(
                    cluster.ring, {x.route_key: x.writer for x in cluster.sets}).values()]}
    store = open_store(cluster)
    try:
        routes, members = await store.routes(), await store.members()
        leader = await store.leader()
    except EtcdError as e:
        raise RingsyncError(f"etcd at {', '.join(cluster.dr.etcd)} did not answer ({e}); "
                            f"check that its members run") from None
    finally:
        await store.close()
    return {
        "dr": True, "failover": f"automatic after {cluster.dr.failover_after:g}s",
        "leader": leader,
        "live": sorted(members),
        "routes": [routes[c].to_dict() if c in routes else Route(c, c).to_dict()
                   for c in cluster.ring] + [
            routes[x.route_key].to_dict() if x.route_key in routes
            else Route(x.route_key, x.writer).to_dict() for x in cluster.sets],
    }
