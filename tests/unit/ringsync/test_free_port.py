"""Ports chosen before their listeners start are never handed out twice."""

from __future__ import annotations

import socket

from ringsync.commands.demo.cluster import free_port


def test_free_port_never_hands_out_a_port_twice_and_each_is_bindable() -> None:
    ports = [free_port() for _ in range(300)]  # none bound meanwhile, as a drill does
    assert len(set(ports)) == len(ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[-1]))
