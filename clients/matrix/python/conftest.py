"""Fixtures for the redis-py matrix: which rkproxy to reach, and clients of every variant.

`cargo xtask clients` starts the servers and two rkproxy processes and passes their addresses:

- RKPROXY_CLIENTS_PROXY: a proxy without tenants; default pool `standalone`, pools `cluster` and
  (with Kafka) `kafka`, reached with `USE <pool>` from a connect hook.
- RKPROXY_CLIENTS_TENANT_PROXY, _TENANT_USER, _TENANT_PASSWORD, _TENANT_PREFIX: a proxy whose only tenant has a
  key prefix, on a standalone pool over the same Redis.
- RKPROXY_CLIENTS_KAFKA_TOPIC: a topic of the `kafka` pool (unset with --no-kafka).
- RKPROXY_CLIENTS_RESTART_*: a proxy this suite starts and restarts itself (proxy_process.py).
- RKPROXY_CLIENTS_REDIS: the standalone Redis itself, to see where a key landed.
"""

import asyncio
import inspect
import os
import uuid

import pytest
import redis
import redis.asyncio

from proxy_process import ProxyProcess

TARGETS = ["standalone", "cluster", "tenant"]
VARIANTS = ["sync-resp2", "sync-resp3", "async-resp2", "async-resp3"]


def host_port(env_name):
    host, port = os.environ[env_name].rsplit(":", 1)
    return host, int(port)


def target_settings(target):
    """Connection settings for a target: address, password, and the pool to `USE` at connect.
    `restart` is the tenant on the suite's own restartable proxy, `restart-cluster` the same
    with `USE cluster`, `redis` the standalone Redis without any proxy."""
    password = os.environ["RKPROXY_CLIENTS_TENANT_PASSWORD"]
    if target == "tenant":
        host, port = host_port("RKPROXY_CLIENTS_TENANT_PROXY")
        return dict(host=host, port=port, password=password), None
    if target in ("restart", "restart-cluster"):
        host, port = host_port("RKPROXY_CLIENTS_RESTART_PROXY")
        return dict(host=host, port=port, password=password), "cluster" if target == "restart-cluster" else None
    if target == "redis":
        host, port = host_port("RKPROXY_CLIENTS_REDIS")
        return dict(host=host, port=port), None
    host, port = host_port("RKPROXY_CLIENTS_PROXY")
    pool = {"standalone": None, "cluster": "cluster", "kafka": "kafka"}[target]
    return dict(host=host, port=port), pool


def sync_use_hook(pool):
    """redis-py calls this instead of its own handshake on every new connection: the handshake,
    then `USE pool`, so pooled and pub/sub connections all reach the same pool."""

    def hook(connection):
        connection.on_connect()
        connection.send_command("USE", pool)
        reply = connection.read_response()
        if reply not in (b"OK", "OK"):
            raise redis.ConnectionError(f"USE {pool} answered {reply!r}")

    return hook


def async_use_hook(pool):
    async def hook(connection):
        await connection.on_connect()
        await connection.send_command("USE", pool)
        reply = await connection.read_response()
        if reply not in (b"OK", "OK"):
            raise redis.ConnectionError(f"USE {pool} answered {reply!r}")

    return hook


class Blocking:
    """Drives an asyncio redis-py object from the (synchronous) scenarios, so that each scenario is
    written once for both APIs: a call that returns an awaitable is run to completion on the test's
    event loop, and redis-py objects it returns (pipelines, pub/sub, connections) are wrapped too.
    The I/O is the asyncio client's own; only the driving is synchronous."""

    def __init__(self, target, loop):
        self._target = target
        self._loop = loop

    def __getattr__(self, name):
        value = getattr(self._target, name)
        if callable(value):
            return lambda *args, **kwargs: self._wrap(value(*args, **kwargs))
        return self._wrap(value)

    def _wrap(self, value):
        if inspect.isawaitable(value):
            value = self._loop.run_until_complete(value)
        if type(value).__module__.startswith("redis."):
            return Blocking(value, self._loop)
        return value


class Clients:
    """Makes clients of one variant for one target, and closes them all at the end of the test."""

    def __init__(self, target, variant):
        self.target = target
        self.variant = variant
        self.is_async = variant.startswith("async")
        self.protocol = 3 if variant.endswith("resp3") else 2
        self.loop = asyncio.new_event_loop() if self.is_async else None
        self.made = []

    def make(self, target=None, **extra):
        settings, pool = target_settings(target or self.target)
        settings.update(protocol=self.protocol, socket_timeout=10, **extra)
        if self.is_async:
            if pool:
                settings["redis_connect_func"] = async_use_hook(pool)
            client = redis.asyncio.Redis(**settings)
            self.made.append(client)
            return Blocking(client, self.loop)
        if pool:
            settings["redis_connect_func"] = sync_use_hook(pool)
        client = redis.Redis(**settings)
        self.made.append(client)
        return client

    def adopt(self, client):
        """Takes a client made elsewhere (`from_url`) under this object's care: wrapped for
        asyncio, closed at the end of the test."""
        self.made.append(client)
        return Blocking(client, self.loop) if self.is_async else client

    def close(self):
        for client in self.made:
            if self.is_async:
                self.loop.run_until_complete(client.aclose())
            else:
                client.close()
        if self.loop:
            self.loop.close()


@pytest.fixture(params=VARIANTS)
def variant(request):
    return request.param


@pytest.fixture(params=TARGETS)
def target(request):
    return request.param


@pytest.fixture
def clients(target, variant):
    made = Clients(target, variant)
    yield made
    made.close()


@pytest.fixture
def r(clients):
    """The scenario's main client."""
    return clients.make()


@pytest.fixture
def restartable_proxy():
    """The suite's own rkproxy, started for one test and stopped after it."""
    proxy = ProxyProcess()
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture
def key():
    """Unique key names for one test: `key("a")`; `key("a", tag=True)` shares a hash tag."""
    token = uuid.uuid4().hex[:12]

    def name(suffix, tag=False):
        return f"{{py:{token}}}:{suffix}" if tag else f"py:{token}:{suffix}"

    return name
