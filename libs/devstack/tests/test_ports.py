from __future__ import annotations

import socket

from devstack.ports import free_port, free_ports, port_is_free


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(20)
    assert len(set(ports)) == 20
    for port in ports:
        assert 1024 < port < 65536
        assert port_is_free(port)


def test_a_listening_port_is_not_free() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])


def test_free_port_never_repeats_in_one_process() -> None:
    seen = {free_port() for _ in range(50)}
    assert len(seen) == 50
