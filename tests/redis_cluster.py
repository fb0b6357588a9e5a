"""A real three-master Redis Cluster on loopback ports, from the ``redis-server`` binary, for the
cluster tests: started once per session, nodes stopped and restarted by tests, removed at exit."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis
from redis.cluster import RedisCluster

MASTERS = 3


def _free_port() -> int:
    """A loopback port nothing listens on, whose port + 10000 (the cluster bus) is free too."""
    for _ in range(100):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of loopback ports for a Redis Cluster node")


class LocalRedisCluster:
    """``MASTERS`` masters, no replicas, every slot covered; ``url`` is ``redis+cluster://``."""

    def __init__(self, folder: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None or shutil.which("redis-cli") is None:
            raise FileNotFoundError("redis-server and redis-cli are needed for a Redis Cluster")
        self._binary = binary
        self._folder = folder
        self.ports = [_free_port() for _ in range(MASTERS)]
        self._processes: dict[int, subprocess.Popen[bytes]] = {}
        for port in self.ports:
            self.start_node(port)
        nodes = [f"127.0.0.1:{port}" for port in self.ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0"],
            input=b"yes\n",
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.wait_until_ok()

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start_node(self, port: int) -> None:
        """Start (or restart, with its saved cluster config) the node on ``port``."""
        folder = self._folder / str(port)
        folder.mkdir(parents=True, exist_ok=True)
        self._processes[port] = subprocess.Popen(
            [
                self._binary,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "2000",
                "--cluster-require-full-coverage", "no",
                "--cluster-allow-reads-when-down", "no",
                "--save", "",
                "--appendonly", "yes",
                "--dir", str(folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=port, socket_timeout=0.5).ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"Redis Cluster node on port {port} did not start")

    def stop_node(self, port: int) -> None:
        """Kill the node on ``port`` (SIGKILL: as a crash)."""
        process = self._processes.pop(port)
        process.kill()
        process.wait(timeout=10)

    def wait_until_ok(self, timeout_s: float = 30.0) -> None:
        """Until every node reports ``cluster_state:ok``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            states = []
            for port in self.ports:
                try:
                    states.append(redis.Redis(port=port).cluster("info")["cluster_state"])
                except redis.RedisError:
                    states.append("down")
            if all(state == "ok" for state in states):
                return
            time.sleep(0.1)
        raise RuntimeError(f"Redis Cluster not ok after {timeout_s} s")

    def port_of(self, key: str) -> int:
        """The port of the master that holds ``key``."""
        client = RedisCluster(host="127.0.0.1", port=self.ports[0])
        try:
            node = client.get_node_from_key(key)  # type: ignore[no-untyped-call, unused-ignore]
            return int(node.port)
        finally:
            client.close()

    def close(self) -> None:
        for port in list(self._processes):
            self.stop_node(port)
        shutil.rmtree(self._folder, ignore_errors=True)
