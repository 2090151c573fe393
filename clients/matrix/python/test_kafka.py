"""KPUSH / KPOP through the Kafka pool with redis-py's raw `execute_command` (no helper yet)."""

import os

import pytest


@pytest.mark.parametrize("target", ["kafka"])
def test_kpush_kpop_by_partition_and_offset(r):
    topic = os.environ["RKPROXY_CLIENTS_KAFKA_TOPIC"]
    partitions = r.execute_command("KPARTITIONS", topic)
    assert sorted(partitions) == [0, 1]
    value = b"py\x00\xff" + os.urandom(16)
    partition, offset = r.execute_command("KPUSH", topic, 1, value)
    assert partition == 1
    assert offset >= 0
    assert r.execute_command("KPOP", topic, 1, offset) == [1, offset, value]
    empty_partition, empty_offset = r.execute_command("KPUSH", topic, 1, b"")
    assert empty_partition == 1
    assert empty_offset > offset
    assert r.execute_command("KPOP", topic, 1, empty_offset) == [1, empty_offset, b""]
    records = r.execute_command("KPOP", topic, 1, offset, 2)
    assert records[0] == [1, offset, value]
    assert len(records) == 2
