"""rkproxy_kafka against a real rkproxy and a real Kafka broker (run by `cargo xtask clients`)."""

import asyncio
import os
import time

import pytest
import redis
from redis.exceptions import ResponseError

import rkproxy_kafka
from rkproxy_kafka import EARLIEST, LATEST, KafkaError, OffsetAt, Pushed, Record


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def kafka(request, settings):
    client = rkproxy_kafka.connect(settings.host, settings.port, pool=settings.pool,
                                   **settings.options(protocol=request.param))
    yield client
    client.redis.close()


def test_kpush_then_kpop_by_partition_and_offset(kafka, settings):
    value = b"py\x00\xff\r\n" + os.urandom(8)
    pushed = kafka.kpush(settings.topic, value, partition=1)
    assert isinstance(pushed, Pushed)
    assert pushed.partition == 1 and pushed.offset >= 0
    assert kafka.kpop(settings.topic, 1, pushed.offset) == Record(1, pushed.offset, value)
    empty = kafka.kpush(settings.topic, b"", partition=1)
    assert empty.offset > pushed.offset
    records = kafka.kpop(settings.topic, 1, pushed.offset, 2)
    assert records[0] == Record(1, pushed.offset, value)
    assert records[1].value is not None and len(records) == 2
    assert kafka.kpop(settings.topic, 1, empty.offset) == Record(1, empty.offset, b"")


def test_kpop_past_the_end_is_none_or_empty(kafka, settings):
    end = kafka.koffset(settings.topic, 0, LATEST).offset
    assert kafka.kpop(settings.topic, 0, end + 1000) is None
    assert kafka.kpop(settings.topic, 0, end + 1000, 5) == []


def test_kpush_without_partition_and_kpartitions(kafka, settings):
    assert kafka.kpartitions(settings.topic) == [0, 1]
    partitions = {kafka.kpush(settings.topic, b"round-robin").partition for _ in range(4)}
    assert partitions == {0, 1}


def test_koffset_latest_earliest_and_time(kafka, settings):
    before_ms = int(time.time() * 1000) - 1
    pushed = kafka.kpush(settings.topic, b"timed", partition=0)
    latest = kafka.koffset(settings.topic, 0, LATEST)
    assert latest == OffsetAt(latest.offset, -1) and latest.offset > pushed.offset
    assert kafka.koffset(settings.topic, 0, EARLIEST) == OffsetAt(0, -1)
    at_time = kafka.koffset(settings.topic, 0, before_ms)
    assert at_time.offset <= pushed.offset and at_time.timestamp >= before_ms


def test_managed_kpop_gives_each_record_once(settings):
    client = rkproxy_kafka.connect(settings.host, settings.port, pool=settings.pool, **settings.options())
    values = {f"managed-{index}-{os.urandom(4).hex()}".encode() for index in range(3)}
    for value in values:
        client.kpush(settings.managed_topic, value)
    popped = []
    for _ in range(50):
        record = client.kpop(settings.managed_topic)
        if record is None:
            break
        assert isinstance(record, Record)
        popped.append(record.value)
    assert sorted(popped) == sorted(values)
    assert client.kpop(settings.managed_topic) is None
    client.redis.close()


def test_kafka_errors_raise_kafka_error_with_the_kafka_name(settings):
    down = rkproxy_kafka.connect(settings.host, settings.port, pool=settings.down_pool, **settings.options())
    with pytest.raises(KafkaError) as raised:
        down.kpush(settings.topic, b"nowhere")
    assert raised.value.name == "BROKER_NOT_AVAILABLE"
    assert isinstance(raised.value, ResponseError)
    with pytest.raises(KafkaError) as raised:
        down.kpop(settings.topic)
    assert raised.value.name == "BROKER_NOT_AVAILABLE"
    down.redis.close()


def test_other_refusals_stay_redis_py_errors(kafka, settings):
    with pytest.raises(ResponseError) as raised:
        kafka.kpush("no-such-topic", b"x")
    assert not isinstance(raised.value, KafkaError)
    assert "unknown topic 'no-such-topic'" in str(raised.value)
    with pytest.raises(ResponseError, match="wrong partition 7"):
        kafka.kpop(settings.topic, 7, 0)


def test_arguments_are_checked_before_sending(kafka, settings):
    with pytest.raises(ValueError):
        kafka.kpop(settings.topic, 0)
    with pytest.raises(ValueError):
        rkproxy_kafka.KafkaClient(redis.Redis(decode_responses=True))


def test_reconnect_restores_auth_and_pool(settings, relay):
    client = rkproxy_kafka.connect("127.0.0.1", relay.port, pool=settings.pool, **settings.options())
    client.kpush(settings.topic, b"before the cut", partition=0)
    relay.cut_all()
    # redis-py retries the command on a new connection; the hook put it back on the Kafka pool.
    pushed = client.kpush(settings.topic, b"after the cut", partition=0)
    assert client.kpop(settings.topic, 0, pushed.offset) == Record(0, pushed.offset, b"after the cut")
    assert relay.accepted == 2
    client.redis.close()


def test_without_the_hook_a_reconnected_client_is_back_on_the_default_pool(settings, relay):
    """The failure the hook prevents: USE sent once, by hand, is lost with the connection."""
    plain = redis.Redis("127.0.0.1", relay.port, **settings.options())
    assert plain.execute_command("USE", settings.pool) in (b"OK", "OK")
    client = rkproxy_kafka.KafkaClient(plain)
    client.kpush(settings.topic, b"before the cut", partition=0)
    relay.cut_all()
    with pytest.raises(ResponseError, match="uses Redis pool"):
        client.kpush(settings.topic, b"after the cut", partition=0)
    assert relay.accepted == 2
    plain.close()


def test_asyncio_client_pushes_pops_and_reconnects(settings, relay):
    async def scenario():
        client = rkproxy_kafka.connect_async("127.0.0.1", relay.port, pool=settings.pool, **settings.options())
        pushed = await client.kpush(settings.topic, b"async \x00 value", 1)
        assert await client.kpop(settings.topic, 1, pushed.offset) == Record(1, pushed.offset, b"async \x00 value")
        assert await client.kpop(settings.topic, 1, pushed.offset, 1) == [Record(1, pushed.offset, b"async \x00 value")]
        assert await client.kpartitions(settings.topic) == [0, 1]
        relay.cut_all()
        again = await client.kpush(settings.topic, b"after the cut", 1)
        assert again.offset > pushed.offset
        assert (await client.koffset(settings.topic, 1, LATEST)).offset > again.offset
        down = rkproxy_kafka.connect_async(settings.host, settings.port, pool=settings.down_pool, **settings.options())
        with pytest.raises(KafkaError) as raised:
            await down.kpush(settings.topic, b"nowhere")
        assert raised.value.name == "BROKER_NOT_AVAILABLE"
        await down.redis.aclose()
        await client.redis.aclose()

    asyncio.run(scenario())
    assert relay.accepted >= 2
