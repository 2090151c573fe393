"""redis-py's connection pool (sync and asyncio, RESP2 and RESP3) when the proxy it talks to is
restarted on the same port: the suite's own proxy (proxy_process.py), so no other suite sees it.

What redis-py does: a pooled connection whose socket the proxy closed is found out when the pool
hands it out (EOF readable) or when a command on it fails, and is reconnected with the client's
whole handshake: AUTH (or HELLO 3 AUTH) from its settings, and the `redis_connect_func` hook, so
`USE cluster` from the hook is in force again on every reconnected connection. A command through
the client retries on a connection error, so the first one after the restart succeeds. The sync
pool's check at hand-out (poll on the socket) always sees the EOF; the asyncio pool's may not yet
(the event loop has not read it), so a connection taken straight from the asyncio pool can fail
once, and is then reconnected."""

import time

import pytest
import redis

from support import set_through_held_connections, tenant_prefix

# How long the pool may take to serve again after the proxy listens again.
RECOVERY_SECONDS = 10


def first_success_after_restart(command):
    """Runs `command` until it succeeds, at most RECOVERY_SECONDS; returns the connection errors
    seen before (redis-py retries by itself, so normally none)."""
    deadline = time.monotonic() + RECOVERY_SECONDS
    errors = []
    while True:
        try:
            command()
            return errors
        except redis.ConnectionError as error:
            errors.append(error)
            if time.monotonic() > deadline:
                raise AssertionError(f"the pool did not serve within {RECOVERY_SECONDS} s: {errors}")
            time.sleep(0.1)


@pytest.mark.parametrize("target", ["restart", "restart-cluster"])
def test_connection_pool_after_a_proxy_restart(clients, restartable_proxy, key):
    """Four pooled connections open before the restart; after it, the first command succeeds
    within RECOVERY_SECONDS, four connections held at once all work, and each key written after
    the restart is on the tenant (under its prefix) and on the pool of the `USE` hook."""
    r = clients.make(max_connections=8)
    before = [key(f"before{index}") for index in range(4)]
    assert len(set_through_held_connections(r, before)) == len(before)

    restartable_proxy.restart()

    errors = first_success_after_restart(lambda: r.set(key("first"), "after-restart"))
    assert errors == [], "redis-py's own retry should have hidden the restart"
    after = [key(f"after{index}") for index in range(4)]
    held = []
    errors = first_success_after_restart(lambda: held.append(set_through_held_connections(r, after)))
    # At most one failure per connection the pool held before the restart, and only from asyncio.
    assert len(errors) <= (len(before) if clients.is_async else 0), errors
    assert len(held[0]) == len(after)
    written = [key("first")] + after
    values = [b"after-restart"] + [name.encode() for name in after]
    assert r.mget(written) == values

    prefixed = [tenant_prefix() + name for name in written]
    direct = clients.make(target="redis")
    if clients.target == "restart":
        # AUTH re-sent on reconnect: the keys are the tenant's, under its prefix in Redis.
        assert direct.mget(prefixed) == values
    else:
        # The hook's `USE cluster` re-sent on reconnect: under the prefix in the cluster (read
        # through the other proxy's cluster pool), nothing in the standalone Redis.
        assert clients.make(target="cluster").mget(prefixed) == values
        assert direct.exists(*prefixed) == 0
    assert r.delete(*before, *written) == len(before) + len(written)
