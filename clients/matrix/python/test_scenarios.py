"""redis-py through rkproxy, in plain (non-cluster) mode, on every target and variant (conftest)."""

import os
import time

import pytest
import redis

from support import as_text, back_to_normal_commands, tenant_prefix, wait_message


def test_connect_handshake(clients, r):
    """What redis-py sends at connect (HELLO for RESP3, CLIENT SETINFO, CLIENT SETNAME, AUTH for
    the tenant) is accepted, and the proxy reports it back."""
    assert r.ping() is True
    named = clients.make(client_name="matrix-py")
    assert as_text(named.client_getname()) == "matrix-py"
    info = {as_text(k): as_text(v) for k, v in named.client_info().items()}
    assert info["lib-name"] == "redis-py"
    assert info["lib-ver"] == redis.__version__
    assert info["resp"] == str(clients.protocol)
    assert info["name"] == "matrix-py"
    server = r.info("server")
    assert server["redis_mode"] == "standalone"
    assert str(server["redis_version"])[0].isdigit()


@pytest.mark.parametrize("target", ["standalone"])
def test_connect_select_db(clients, key):
    """`db=` makes redis-py send SELECT at connect; the keys are in that database only."""
    in_db3 = clients.make(db=3)
    in_db0 = clients.make()
    assert in_db3.set(key("selected"), "three") is True
    assert in_db3.get(key("selected")) == b"three"
    assert in_db0.get(key("selected")) is None
    assert in_db3.delete(key("selected")) == 1


def test_strings(r, key):
    assert r.set(key("s"), "10") is True
    assert r.incrby(key("s"), 5) == 15
    assert r.append(key("s"), "x") == 3
    assert r.get(key("s")) == b"15x"
    assert r.getrange(key("s"), 0, 1) == b"15"
    assert r.set(key("s"), "v", ex=100) is True
    assert 0 < r.ttl(key("s")) <= 100
    assert r.set(key("s"), "other", nx=True) is None
    assert r.strlen(key("s")) == 1
    assert r.delete(key("s")) == 1
    assert r.exists(key("s")) == 0


def test_hashes(r, key):
    assert r.hset(key("h"), mapping={"a": "1", "b": "2"}) == 2
    assert r.hincrby(key("h"), "a", 41) == 42
    assert r.hgetall(key("h")) == {b"a": b"42", b"b": b"2"}
    assert r.hmget(key("h"), ["b", "missing"]) == [b"2", None]
    assert r.hdel(key("h"), "b") == 1
    assert r.hlen(key("h")) == 1
    assert r.delete(key("h")) == 1


def test_lists(r, key):
    assert r.rpush(key("l"), "b", "c") == 2
    assert r.lpush(key("l"), "a") == 3
    assert r.lrange(key("l"), 0, -1) == [b"a", b"b", b"c"]
    assert r.lpop(key("l")) == b"a"
    assert r.rpop(key("l"), 2) == [b"c", b"b"]
    assert r.llen(key("l")) == 0


def test_sets(r, key):
    assert r.sadd(key("x", tag=True), "a", "b", "c") == 3
    assert r.sadd(key("y", tag=True), "b", "c", "d") == 3
    assert r.smembers(key("x", tag=True)) == {b"a", b"b", b"c"}
    assert r.sinter([key("x", tag=True), key("y", tag=True)]) == {b"b", b"c"}
    assert r.sismember(key("x", tag=True), "a") in (1, True)
    assert r.srem(key("x", tag=True), "a") == 1
    assert r.scard(key("x", tag=True)) == 2
    assert r.delete(key("x", tag=True), key("y", tag=True)) == 2


def test_sorted_sets(r, key):
    assert r.zadd(key("z"), {"a": 1, "b": 2.5, "c": 3}) == 3
    assert r.zincrby(key("z"), 10, "a") == 11.0
    ranked = [(bytes(member), float(score)) for member, score in r.zrange(key("z"), 0, -1, withscores=True)]
    assert ranked == [(b"b", 2.5), (b"c", 3.0), (b"a", 11.0)]
    assert r.zscore(key("z"), "b") == 2.5
    assert r.zrank(key("z"), "a") == 2
    assert r.zrangebyscore(key("z"), 2, 5) == [b"b", b"c"]
    assert r.delete(key("z")) == 1


def test_binary_and_empty_values(r, key):
    binary = bytes(range(256)) * 4 + b"\r\n\x00"
    binary_key = key("bin") + "\x00\xff\r\n"
    assert r.set(binary_key, binary) is True
    assert r.get(binary_key) == binary
    assert r.set(key("empty"), b"") is True
    assert r.get(key("empty")) == b""
    assert r.strlen(key("empty")) == 0
    assert r.hset(key("h"), b"", b"") == 1
    assert r.hget(key("h"), b"") == b""
    assert r.delete(binary_key, key("empty"), key("h")) == 3


def test_one_megabyte_value(r, key):
    value = os.urandom(1 << 20)
    assert r.set(key("big"), value) is True
    assert r.get(key("big")) == value
    assert r.strlen(key("big")) == 1 << 20
    assert r.delete(key("big")) == 1


def test_pipeline_of_1000_commands(r, key):
    writes = r.pipeline(transaction=False)
    for index in range(1000):
        writes.set(key(f"p{index}"), f"value-{index}")
    assert writes.execute() == [True] * 1000
    reads = r.pipeline(transaction=False)
    for index in range(1000):
        reads.get(key(f"p{index}"))
    assert reads.execute() == [f"value-{index}".encode() for index in range(1000)]
    assert r.delete(*[key(f"p{index}") for index in range(1000)]) == 1000


def test_cross_slot_mset_mget_del(r, key):
    """Keys without a hash tag land in many slots on the cluster pool; the proxy splits and
    merges, so the client sees one server."""
    names = [key(f"m{index}") for index in range(20)]
    assert r.mset({name: f"v{index}" for index, name in enumerate(names)}) is True
    assert r.mget(names + [key("missing")]) == [f"v{index}".encode() for index in range(20)] + [None]
    assert r.exists(*names) == 20
    assert r.delete(*names) == 20
    assert r.mget(names) == [None] * 20


def test_scan_to_the_end(r, key):
    names = {key(f"scan{index}") for index in range(150)}
    assert r.mset({name: "x" for name in names}) is True
    found = []
    cursor = 0
    for _ in range(10_000):
        cursor, batch = r.scan(cursor, match=key("scan*"), count=20)
        found.extend(as_text(name) for name in batch)
        if int(cursor) == 0:
            break
    assert int(cursor) == 0
    assert set(found) == names
    assert r.delete(*names) == 150


def test_multi_exec_on_one_hash_tag(r, key):
    transaction = r.pipeline(transaction=True)
    transaction.set(key("a", tag=True), "1")
    transaction.incr(key("a", tag=True))
    transaction.rpush(key("b", tag=True), "x", "y")
    transaction.get(key("a", tag=True))
    assert transaction.execute() == [True, 2, 2, b"2"]
    assert r.delete(key("a", tag=True), key("b", tag=True)) == 2


def test_watch_aborts_on_a_concurrent_write(clients, r, key):
    other = clients.make()
    assert r.set(key("w", tag=True), "1") is True
    watching = r.pipeline(transaction=True)
    watching.watch(key("w", tag=True))
    assert watching.get(key("w", tag=True)) == b"1"
    assert other.set(key("w", tag=True), "changed") is True
    watching.multi()
    watching.set(key("w", tag=True), "mine")
    watching.set(key("w2", tag=True), "mine")
    with pytest.raises(redis.WatchError):
        watching.execute()
    assert r.get(key("w", tag=True)) == b"changed"
    assert r.exists(key("w2", tag=True)) == 0
    unchanged = r.pipeline(transaction=True)
    unchanged.watch(key("w", tag=True))
    unchanged.multi()
    unchanged.set(key("w", tag=True), "mine")
    assert unchanged.execute() == [True]
    assert r.get(key("w", tag=True)) == b"mine"
    assert r.delete(key("w", tag=True)) == 1


def test_blpop_with_a_timeout(r, key):
    # Both keys in one slot: on a cluster pool a blocking command on keys of several slots gets
    # CROSSSLOT, as from Redis Cluster.
    empty, queue = key("empty", tag=True), key("queue", tag=True)
    started = time.monotonic()
    assert r.blpop([empty], timeout=0.3) is None
    assert time.monotonic() - started >= 0.25
    assert r.rpush(queue, "job") == 1
    popped = r.blpop([empty, queue], timeout=1)
    assert [as_text(part) for part in popped] == [queue, "job"]
    assert r.set(key("after"), "normal") is True
    assert r.get(key("after")) == b"normal"
    assert r.delete(key("after")) == 1


def test_subscribe_then_normal_commands(clients, r, key):
    channel = key("channel")
    pubsub = r.pubsub()
    pubsub.subscribe(channel)
    confirmation = wait_message(pubsub, "subscribe")
    assert as_text(confirmation["channel"]) == channel
    # Redis Cluster counts only the receivers on the node that took the PUBLISH (the message
    # still reaches every node), so on the cluster pool the count may be 0.
    receivers = r.publish(channel, "hello")
    assert receivers in ((0, 1) if clients.target == "cluster" else (1,))
    message = wait_message(pubsub, "message")
    assert as_text(message["channel"]) == channel
    assert message["data"] == b"hello"
    pubsub.unsubscribe(channel)
    assert wait_message(pubsub, "unsubscribe")["data"] == 0
    back_to_normal_commands(clients, r, pubsub, key)


def test_eval(r, key):
    script = "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), #ARGV}"
    assert r.eval(script, 1, key("e"), "scripted", "extra") == [b"scripted", 2]
    assert r.get(key("e")) == b"scripted"
    assert r.eval("return redis.call('INCRBY', KEYS[1], ARGV[1])", 1, key("n"), 7) == 7
    assert r.delete(key("e"), key("n")) == 2


@pytest.mark.parametrize("target", ["tenant"])
def test_tenant_keys_carry_the_prefix(clients, r, key):
    """What the tenant writes is stored under its prefix, seen from a client without tenant."""
    prefix = tenant_prefix()
    untenanted = clients.make(target="standalone")
    assert r.set(key("mine"), "tenant-value") is True
    assert untenanted.get(prefix + key("mine")) == b"tenant-value"
    assert untenanted.get(key("mine")) is None
    assert r.delete(key("mine")) == 1
