"""redis-py through rkproxy: streams with a consumer group, PSUBSCRIBE, every form of AUTH, the
connection pool after AUTH, and client-side caching (which the proxy refuses). Targets and variants
as in conftest.py.
(The pool after a proxy restart is in test_restart.py.)"""

import os
import pytest
import redis
from redis.backoff import NoBackoff
from redis.cache import CacheConfig
from redis.retry import Retry

from support import as_text, back_to_normal_commands, set_through_held_connections, tenant_prefix, wait_message


def stream_ids(reply):
    """{stream: [ids]} from an XREAD / XREADGROUP reply: a list of [name, entries] on RESP2, a
    map of name to [entries] on RESP3 (as redis-py 8.1 parses it, also from Redis itself)."""
    if isinstance(reply, dict):
        return {as_text(name): [entry_id for entry_id, _ in value[0]] for name, value in reply.items()}
    return {as_text(name): [entry_id for entry_id, _ in entries] for name, entries in reply}


def test_streams_with_a_consumer_group(clients, r, key):
    """XADD, XRANGE, XREAD, XGROUP CREATE, XREADGROUP, XACK. One key, so one slot on the cluster."""
    stream = key("stream", tag=True)
    first = r.xadd(stream, {"field": "one"})
    second = r.xadd(stream, {"field": "two", "bin": b"\x00\xff"})
    assert [entry_id for entry_id, _ in r.xrange(stream)] == [first, second]
    assert r.xrange(stream, min=second)[0][1] == {b"field": b"two", b"bin": b"\x00\xff"}
    assert stream_ids(r.xread({stream: first}, count=10)) == {stream: [second]}
    assert r.xgroup_create(stream, "workers", id="0") is True
    delivered = r.xreadgroup("workers", "alice", {stream: ">"}, count=10)
    assert stream_ids(delivered) == {stream: [first, second]}
    assert r.xpending(stream, "workers")["pending"] == 2
    assert r.xack(stream, "workers", first, second) == 2
    assert r.xpending(stream, "workers")["pending"] == 0
    assert r.delete(stream) == 1


def test_psubscribe_then_normal_commands(clients, r, key):
    pattern = key("news") + ".*"
    channel = key("news") + ".sport"
    pubsub = r.pubsub()
    pubsub.psubscribe(pattern)
    assert as_text(wait_message(pubsub, "psubscribe")["channel"]) == pattern
    # As for SUBSCRIBE: on the cluster pool PUBLISH counts only the publishing node's receivers.
    receivers = r.publish(channel, "goal")
    assert receivers in ((0, 1) if clients.target == "cluster" else (1,))
    message = wait_message(pubsub, "pmessage")
    assert as_text(message["pattern"]) == pattern
    assert as_text(message["channel"]) == channel
    assert message["data"] == b"goal"
    pubsub.punsubscribe(pattern)
    assert wait_message(pubsub, "punsubscribe")["data"] == 0
    back_to_normal_commands(clients, r, pubsub, key)


def tenant_url(username, password, protocol):
    host, port = os.environ["RKPROXY_CLIENTS_TENANT_PROXY"].rsplit(":", 1)
    return f"redis://{username}:{password}@{host}:{port}/0?protocol={protocol}"


def tenant_owns(clients, client, key):
    """The client is on the tenant: what it writes lands under the tenant's prefix."""
    prefix = tenant_prefix()
    untenanted = clients.make(target="standalone")
    assert client.set(key("auth"), "mine") is True
    assert untenanted.get(prefix + key("auth")) == b"mine"
    assert client.delete(key("auth")) == 1


@pytest.mark.parametrize("target", ["tenant"])
def test_auth_in_every_form(clients, key):
    password = os.environ["RKPROXY_CLIENTS_TENANT_PASSWORD"]
    user = os.environ["RKPROXY_CLIENTS_TENANT_USER"]
    # Password only (AUTH pw, or HELLO 3 AUTH default pw on RESP3) is what `clients.make()` uses.
    tenant_owns(clients, clients.make(), key)
    # Username and password: AUTH user pw (HELLO 3 AUTH user pw on RESP3).
    tenant_owns(clients, clients.make(username=user), key)
    # At connect from a URL, with user and with an empty user (`redis://:pw@`).
    for url_user in (user, ""):
        url = tenant_url(url_user, password, clients.protocol)
        if clients.is_async:
            from_url = clients.adopt(redis.asyncio.Redis.from_url(url, socket_timeout=10))
        else:
            from_url = clients.adopt(redis.Redis.from_url(url, socket_timeout=10))
        tenant_owns(clients, from_url, key)
    # An explicit AUTH command after connecting without a password. Only on RESP2 and without
    # CLIENT SETINFO: HELLO 3 and CLIENT SETINFO before AUTH get NOAUTH (from Redis too), which
    # redis-py raises at connect.
    if clients.protocol == 2:
        single = clients.make(password=None, single_connection_client=True, driver_info=None)
        assert single.execute_command("AUTH", user, password) in (True, b"OK", "OK")
        tenant_owns(clients, single, key)
    # A wrong password is the client's authentication error, at connect. Without retries: the
    # proxy delays each WRONGPASS to one client IP longer (up to 2 s), and redis-py would retry.
    wrong = clients.make(password="wrong-password", retry=Retry(NoBackoff(), 0))
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()


@pytest.mark.parametrize("target", ["tenant", "cluster"])
def test_connection_pool_after_auth(clients, key):
    """Several connections of the client's pool at once (one per thread, or a dedicated one per
    asyncio task): each made by the pool with the client's AUTH (or `USE` hook), each on the tenant."""
    r = clients.make(max_connections=8)
    names = [key(f"pooled{index}") for index in range(6)]
    ids = set_through_held_connections(r, names)
    assert len(ids) == len(names), "the pool handed out the same connection twice"
    if clients.target == "tenant":
        prefix = tenant_prefix()
        untenanted = clients.make(target="standalone")
        assert untenanted.mget([prefix + name for name in names]) == [name.encode() for name in names]
    else:
        # On the cluster pool: the pooled connections went through `USE cluster`, so the keys are
        # in the cluster, not in the default standalone pool.
        standalone = clients.make(target="standalone")
        assert standalone.exists(*names) == 0
    assert r.mget(names) == [name.encode() for name in names]
    assert r.delete(*names) == len(names)


@pytest.mark.parametrize("variant", ["sync-resp3"])
def test_client_side_caching_is_refused(clients):
    """redis-py's client-side cache (sync client, RESP3 only; redis.asyncio has none) sends
    CLIENT TRACKING ON when it connects; the proxy refuses it, and the client raises that error
    instead of hanging or serving stale values."""
    cached = clients.make(cache_config=CacheConfig())
    with pytest.raises(redis.ResponseError, match="CLIENT TRACKING is not supported by rkproxy"):
        cached.ping()
