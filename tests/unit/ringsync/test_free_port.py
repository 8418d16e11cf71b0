"""Ports chosen before their listeners start are never handed out twice."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from ringsync.commands.demo import cluster
from ringsync.commands.demo.cluster import free_port


def test_a_port_the_kernel_offers_again_is_not_handed_out_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    offered = iter([41_001, 41_001, 41_002])  # the kernel offering an unbound port twice

    class Offering:
        def __init__(self, *args: Any) -> None:
            self.port = 0

        def __enter__(self) -> Offering:
            return self

        def __exit__(self, *args: Any) -> None:
            pass

        def bind(self, address: tuple[str, int]) -> None:
            self.port = next(offered)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(cluster.socket, "socket", Offering)
    monkeypatch.setattr(cluster, "_HANDED_OUT", set())
    assert [free_port(), free_port()] == [41_001, 41_002]


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = [free_port() for _ in range(100)]  # none bound meanwhile, as a drill does
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))
