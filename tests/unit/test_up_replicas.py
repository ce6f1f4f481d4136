"""A replica restarts on its own ports (the gateway keeps routing to them) unless another
process took one meanwhile; then it moves to new ports and says so, instead of failing to bind
forever. Ports handed out by one supervisor are never handed out twice."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from kubemind.local.up.replicas import Replica
from kubemind.processes import free_port


def wait(replica: Replica, condition: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replica.poll()
        if condition == "ready" and replica.ready:
            return
        if condition == "down" and replica.server is None:
            return
        time.sleep(0.1)
    raise AssertionError(f"replica not {condition} after {timeout}s: {replica.log_path.read_text()[-2000:]}")


def test_a_replica_whose_port_was_taken_while_down_restarts_on_new_ports(tmp_path: Path) -> None:
    said: list[str] = []
    replica = Replica("simple-predictor-1", 0, "kubemind_predictors.simple", ("--model_name", "simple"), {},
                      tmp_path / "replica.log", 60.0, said.append)
    replica.start()
    thief = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        wait(replica, "ready")
        first = replica.ports
        assert replica.server is not None
        replica.server.process.kill()
        wait(replica, "down")
        thief.bind(("127.0.0.1", first[1]))  # its gRPC port, taken by someone else
        thief.listen()
        wait(replica, "ready")
        assert replica.ports != first and first[1] not in replica.ports
        assert replica.moved  # the runner reloads the gateway for it
        assert any(f"port {first[1]} is taken by another process" in line for line in said), said
    finally:
        thief.close()
        replica.stop()


def test_free_port_never_hands_out_a_port_twice() -> None:
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
