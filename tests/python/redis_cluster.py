"""A real Redis Cluster for tests and benchmarks, from Debian's redis-server.

Nodes listen on 127.0.0.1 only, on free ports above 30000, each in its own temporary folder with
no persistence; `stop()` (and leaving the `with` block) kills exactly the processes this object
started, by process id. Nothing here talks to a server it did not start.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def redis_installed() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_ports(count: int) -> list[int]:
    """`count` consecutive free ports above 30000 whose cluster-bus ports (+10000) are free too."""
    rng = random.Random(os.getpid() ^ int(time.time() * 1e6))
    for _ in range(200):
        base = 30000 + rng.randrange(20000)
        ports = list(range(base, base + count))
        if all(_port_free(p) and _port_free(p + 10000) for p in ports):
            return ports
    raise RuntimeError("no free ports above 30000")


class LocalRedis:
    """`masters` > 0: a cluster (masters x (1 + replicas) nodes); 0: one plain server."""

    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000, password: str = "",
                 huge_pages: bool = False):
        """huge_pages: the servers' memory allocator (jemalloc) asks for transparent huge pages
        (MALLOC_CONF thp:always, `disable-thp no`): fewer TLB misses on lookups spread over a large
        table. Needs /sys/kernel/mm/transparent_hugepage/enabled at madvise or always."""
        self.masters, self.replicas, self.password = masters, replicas, password
        nodes = masters * (1 + replicas) if masters else 1
        self.dir = tempfile.mkdtemp(prefix="hps_redis_")
        self.ports = free_ports(nodes)
        self.procs: dict[int, subprocess.Popen] = {}
        try:
            for port in self.ports:
                node_dir = os.path.join(self.dir, str(port))
                os.makedirs(node_dir)
                args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", node_dir,
                        "--save", "", "--appendonly", "no", "--logfile", os.path.join(node_dir, "log")]
                if masters:
                    args += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                             "--cluster-node-timeout", str(node_timeout_ms),
                             "--repl-diskless-sync-delay", "0", "--cluster-replica-validity-factor", "0"]
                if password:
                    args += ["--requirepass", password]
                env = None
                if huge_pages:
                    args += ["--disable-thp", "no"]
                    env = dict(os.environ, MALLOC_CONF="thp:always")
                self.procs[port] = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                                    stderr=subprocess.DEVNULL, env=env)
            for port in self.ports:
                self._wait(port, ["PING"], "PONG")
            if masters:
                subprocess.run(["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in self.ports],
                                "--cluster-replicas", str(replicas), "--cluster-yes"],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
                for port in self.ports:
                    self._wait(port, ["CLUSTER", "INFO"], "cluster_state:ok")
        except BaseException:
            self.stop()
            raise

    @property
    def address(self) -> str:
        return ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def cli(self, port: int, *command: str) -> str:
        auth = ["--no-auth-warning", "-a", self.password] if self.password else []
        return subprocess.run(["redis-cli", "-p", str(port), *auth, *command], capture_output=True, text=True,
                              timeout=30).stdout

    def huge_page_bytes(self) -> int:
        """Bytes of the servers' memory in transparent huge pages (/proc/<pid>/smaps_rollup)."""
        total = 0
        for proc in self.procs.values():
            try:
                with open(f"/proc/{proc.pid}/smaps_rollup") as f:
                    for line in f:
                        if line.startswith("AnonHugePages:"):
                            total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    def master_ports(self) -> list[int]:
        live = next(p for p, proc in self.procs.items() if proc.poll() is None)
        out = []
        for line in self.cli(live, "CLUSTER", "NODES").splitlines():
            parts = line.split()
            if "master" in parts[2] and "fail" not in parts[2]:
                out.append(int(parts[1].split("@")[0].rsplit(":", 1)[1]))
        return out

    def kill(self, port: int) -> None:
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs.values():
            proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "LocalRedis":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait(self, port: int, command: list[str], expect: str, seconds: float = 20) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if expect in self.cli(port, *command):
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis on port {port} did not answer {' '.join(command)} with {expect}")
