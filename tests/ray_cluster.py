"""A Ray cluster of this machine's own, for the Ray tests and bench/batch.py: a head and worker
nodes on 127.0.0.1 (`ray start --head`, `ray start --address`), one CPU each, every port and the
temp folder their own. Each node's processes carry an environment marker, so stop() and kill()
end exactly the processes started here, never another Ray instance on this machine."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))
MARK = "NST_TEST_RAY"
PORTS = ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
         "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """env: what the nodes get besides this process's environment (Ray settings, a token);
    drivers of this cluster use `self.env`."""

    def __init__(self, env: dict | None = None, object_store: int = 100 * 2**20):
        self.tag = uuid.uuid4().hex[:10]
        # Short: Ray's Unix sockets live under it (a socket path has ~107 characters at most).
        self.temp = tempfile.mkdtemp(prefix="nstray", dir="/tmp")
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.object_store = object_store
        self.env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.env.pop("RAY_ADDRESS", None)

    def start(self, name: str, head: bool = False) -> None:
        args = [RAY, "start", "--node-ip-address", "127.0.0.1", "--num-cpus", "1",
                "--num-gpus", "0", "--object-store-memory", str(self.object_store),
                "--disable-usage-stats", "--temp-dir", self.temp]
        for flag in PORTS:
            args += [flag, str(free_port())]
        if head:
            args += ["--head", "--port", str(self.port), "--include-dashboard", "false"]
        else:
            args += ["--address", self.address]
        done = subprocess.run(args, env={**self.env, MARK: f"{self.tag}-{name}"},
                              capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"ray start failed:\n{done.stdout}{done.stderr}")

    def processes(self, name: str | None = None) -> list[psutil.Process]:
        """The processes of one node (all nodes: None): those with its marker and their children
        (Ray's agents are started without the raylet's environment)."""
        found = {}
        for p in psutil.process_iter():
            try:
                mark = p.environ().get(MARK, "")
                if mark == f"{self.tag}-{name}" or \
                        (name is None and mark.startswith(self.tag + "-")):
                    found[p.pid] = p
                    found.update((c.pid, c) for c in p.children(recursive=True))
            except (psutil.Error, OSError):
                continue
        return list(found.values())

    def kill(self, name: str | None = None) -> None:
        """SIGKILL every process of the node (or of the cluster): a machine that dies."""
        procs = self.processes(name)
        _signal(procs, signal.SIGKILL)
        psutil.wait_procs(procs, timeout=10)

    def wait_for(self, nodes: int, timeout: float = 60) -> None:
        """Until `nodes` nodes are alive (a driver connects for a moment to ask)."""
        import ray

        ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                 logging_level="ERROR")
        try:
            deadline = time.monotonic() + timeout
            while (alive := sum(1 for n in ray.nodes() if n.get("Alive"))) != nodes:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{alive} Ray nodes alive, not {nodes}")
                time.sleep(0.5)
        finally:
            ray.shutdown()

    def stop(self) -> None:
        """End every process of the cluster (SIGTERM, then SIGKILL) and remove its folder."""
        procs = self.processes()
        _signal(procs, signal.SIGTERM)
        _, left = psutil.wait_procs(procs, timeout=3)
        _signal(left, signal.SIGKILL)
        psutil.wait_procs(left, timeout=10)
        shutil.rmtree(self.temp, ignore_errors=True)


def _signal(procs, sig) -> None:
    for p in procs:
        try:
            p.send_signal(sig)
        except psutil.Error:  # gone already
            pass
