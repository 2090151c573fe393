"""Fixtures for the helper tests: `cargo xtask clients` starts rkproxy with a Kafka pool and passes

- RKPROXY_CLIENTS_HELPERS_PROXY: the proxy's address; its default pool is a Redis pool, so a
  client must `USE` the Kafka pool;
- RKPROXY_CLIENTS_HELPERS_USER / _PASSWORD: the tenant, allowed on the Kafka pools;
- RKPROXY_CLIENTS_HELPERS_POOL: the Kafka pool; RKPROXY_CLIENTS_HELPERS_DOWN_POOL: a Kafka pool
  whose broker address nothing listens on;
- RKPROXY_CLIENTS_HELPERS_TOPIC: a topic with two partitions; `<topic>-managed-python` is this
  suite's topic for proxy-managed KPOP (no other test writes to it).
"""

import os
import socket
import threading

import pytest


class Settings:
    def __init__(self):
        host, port = os.environ["RKPROXY_CLIENTS_HELPERS_PROXY"].rsplit(":", 1)
        self.host = host
        self.port = int(port)
        self.username = os.environ["RKPROXY_CLIENTS_HELPERS_USER"]
        self.password = os.environ["RKPROXY_CLIENTS_HELPERS_PASSWORD"]
        self.pool = os.environ["RKPROXY_CLIENTS_HELPERS_POOL"]
        self.down_pool = os.environ["RKPROXY_CLIENTS_HELPERS_DOWN_POOL"]
        self.topic = os.environ["RKPROXY_CLIENTS_HELPERS_TOPIC"]
        self.managed_topic = f"{self.topic}-managed-python"

    def options(self, **extra):
        """Connection options of the tenant, with a timeout so that no test can hang."""
        return dict(username=self.username, password=self.password, socket_timeout=10, **extra)


@pytest.fixture(scope="session")
def settings():
    return Settings()


class Relay:
    """A TCP relay to the proxy whose connections the test can cut, as a network failure or a
    proxy restart would: the client sees its connection closed and must open a new one."""

    def __init__(self, target):
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.sockets = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self.lock:
                self.accepted += 1
                self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut_all(self):
        """Closes every relayed connection (both sides)."""
        with self.lock:
            ends, self.sockets = self.sockets, []
        for end in ends:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self):
        self.listener.close()
        self.cut_all()


@pytest.fixture
def relay(settings):
    made = Relay((settings.host, settings.port))
    yield made
    made.close()
