"""Kafka through rkproxy, on redis-py.

rkproxy serves Apache Kafka topics through four Redis-style commands on its Kafka pools: ``KPUSH``,
``KPOP``, ``KPARTITIONS`` and ``KOFFSET``. This module sends them with a ``redis.Redis`` (or
``redis.asyncio.Redis``) client and returns typed results:

- ``kpush(topic, value[, partition])`` -> ``Pushed(partition, offset)``
- ``kpop(topic)`` -> ``Record(partition, offset, value)`` or ``None`` (offsets kept by the proxy,
  per tenant: each record once per consumer group)
- ``kpop(topic, partition, offset)`` -> ``Record`` or ``None``; with ``count``: a list of ``Record``
- ``kpartitions(topic)`` -> list of partition ids
- ``koffset(topic, partition, time)`` -> ``OffsetAt(offset, timestamp)`` (time in ms,
  ``LATEST`` or ``EARLIEST``)

Kafka's own errors (``ERR kafka OFFSET_OUT_OF_RANGE: ...``) raise ``KafkaError``, a
``redis.exceptions.ResponseError`` whose ``name`` is Kafka's error name. Other refusals (an unknown
topic, a permission, a wrong partition) stay redis-py's own exceptions.

``USE <pool>`` holds for one connection only, and redis-py opens new connections on its own (its
connection pool, pub/sub, after a dropped connection). ``use_pool_on_connect(pool)`` is a
``redis_connect_func`` that sends ``USE pool`` after redis-py's own handshake (HELLO, AUTH,
SELECT, CLIENT SETINFO) on every connection, so a reconnected client is authenticated and on the
right pool again. ``connect(...)`` builds a client with it.
"""

from __future__ import annotations

import re
from typing import Any, Awaitable, Callable, List, NamedTuple, Optional, Union, overload

import redis
import redis.asyncio
from redis.exceptions import ResponseError

__all__ = [
    "EARLIEST",
    "LATEST",
    "AsyncKafkaClient",
    "KafkaClient",
    "KafkaError",
    "OffsetAt",
    "Pushed",
    "Record",
    "async_use_pool_on_connect",
    "connect",
    "connect_async",
    "use_pool_on_connect",
]

#: ``koffset`` time for the offset after the last record.
LATEST = -1
#: ``koffset`` time for the earliest offset Kafka still keeps.
EARLIEST = -2

Value = Union[bytes, bytearray, memoryview, str]


class Pushed(NamedTuple):
    """Where ``KPUSH`` wrote a record, once Kafka acknowledged it."""

    partition: int
    offset: int


class Record(NamedTuple):
    """A record read by ``KPOP``; ``value`` is ``None`` for a Kafka tombstone."""

    partition: int
    offset: int
    value: Optional[bytes]


class OffsetAt(NamedTuple):
    """``KOFFSET``'s answer: the offset, and the record's timestamp in ms (-1 when Kafka gives none)."""

    offset: int
    timestamp: int


class KafkaError(ResponseError):
    """An error Kafka reported through rkproxy; ``name`` is Kafka's error name
    (``OFFSET_OUT_OF_RANGE``, ``BROKER_NOT_AVAILABLE``, ``REQUEST_TIMED_OUT``, ...)."""

    def __init__(self, name: str, message: str):
        super().__init__(message)
        self.name = name


# rkproxy writes Kafka's errors as `kafka NAME: details`, alone (`ERR kafka NAME: ...`) or inside a
# pool error (`ERR kafka pool 'p' unavailable: kafka NAME: ...`).
_KAFKA_ERROR_NAME = re.compile(r"(?:^|\s)kafka ([A-Z][A-Z0-9_]*): ")


def _as_kafka_error(error: ResponseError) -> ResponseError:
    """The ``KafkaError`` for an error reply that carries a Kafka error name, else the error itself."""
    message = str(error)
    found = _KAFKA_ERROR_NAME.search(message)
    if found is None:
        return error
    return KafkaError(found.group(1), message)


def _kpush_args(topic: str, value: Value, partition: Optional[int]) -> list:
    if partition is None:
        return ["KPUSH", topic, value]
    return ["KPUSH", topic, int(partition), value]


def _kpop_args(topic: str, partition: Optional[int], offset: Optional[int], count: Optional[int]) -> list:
    if partition is None and offset is None:
        if count is not None:
            raise ValueError("kpop: count needs a partition and an offset")
        return ["KPOP", topic]
    if partition is None or offset is None:
        raise ValueError("kpop: give both partition and offset, or neither")
    args = ["KPOP", topic, int(partition), int(offset)]
    if count is not None:
        args.append(int(count))
    return args


def _record(reply: Any) -> Optional[Record]:
    if reply is None:
        return None
    partition, offset, value = reply
    return Record(int(partition), int(offset), None if value is None else bytes(value))


def _kpop_result(reply: Any, count: Optional[int]) -> Union[Optional[Record], List[Record]]:
    if count is None:
        return _record(reply)
    return [record for record in map(_record, reply or []) if record is not None]


def _pushed(reply: Any) -> Pushed:
    partition, offset = reply
    return Pushed(int(partition), int(offset))


def _offset_at(reply: Any) -> OffsetAt:
    offset, timestamp = reply
    return OffsetAt(int(offset), int(timestamp))


def _check_bytes_replies(client: Any) -> None:
    """Values are bytes: a client that decodes replies to str would mangle binary records."""
    if client.get_connection_kwargs().get("decode_responses"):
        raise ValueError("rkproxy_kafka needs a client with decode_responses=False (values are bytes)")


class KafkaClient:
    """K* commands over a ``redis.Redis`` client that is on a Kafka pool (its default pool, or
    through ``use_pool_on_connect``)."""

    def __init__(self, client: redis.Redis):
        _check_bytes_replies(client)
        self.redis = client

    def _call(self, args: list) -> Any:
        try:
            return self.redis.execute_command(*args)
        except ResponseError as error:
            converted = _as_kafka_error(error)
            if converted is error:
                raise
            raise converted from error

    def kpush(self, topic: str, value: Value, partition: Optional[int] = None) -> Pushed:
        """Writes ``value`` to ``topic`` (to ``partition``, else round-robin); returns where it went."""
        return _pushed(self._call(_kpush_args(topic, value, partition)))

    @overload
    def kpop(self, topic: str) -> Optional[Record]: ...
    @overload
    def kpop(self, topic: str, partition: int, offset: int) -> Optional[Record]: ...
    @overload
    def kpop(self, topic: str, partition: int, offset: int, count: int) -> List[Record]: ...

    def kpop(self, topic, partition=None, offset=None, count=None):
        """The next record for this tenant (no partition), or the record at or after ``offset``
        in ``partition`` (``count``: a list of up to ``count`` records)."""
        return _kpop_result(self._call(_kpop_args(topic, partition, offset, count)), count)

    def kpartitions(self, topic: str) -> List[int]:
        """The topic's partition ids."""
        return [int(partition) for partition in self._call(["KPARTITIONS", topic])]

    def koffset(self, topic: str, partition: int, time: int) -> OffsetAt:
        """The first offset at or after ``time`` (ms), or ``LATEST`` / ``EARLIEST``."""
        return _offset_at(self._call(["KOFFSET", topic, int(partition), int(time)]))


class AsyncKafkaClient:
    """The same commands over a ``redis.asyncio.Redis`` client."""

    def __init__(self, client: redis.asyncio.Redis):
        _check_bytes_replies(client)
        self.redis = client

    async def _call(self, args: list) -> Any:
        try:
            return await self.redis.execute_command(*args)
        except ResponseError as error:
            converted = _as_kafka_error(error)
            if converted is error:
                raise
            raise converted from error

    async def kpush(self, topic: str, value: Value, partition: Optional[int] = None) -> Pushed:
        return _pushed(await self._call(_kpush_args(topic, value, partition)))

    async def kpop(self, topic, partition=None, offset=None, count=None):
        return _kpop_result(await self._call(_kpop_args(topic, partition, offset, count)), count)

    async def kpartitions(self, topic: str) -> List[int]:
        return [int(partition) for partition in await self._call(["KPARTITIONS", topic])]

    async def koffset(self, topic: str, partition: int, time: int) -> OffsetAt:
        return _offset_at(await self._call(["KOFFSET", topic, int(partition), int(time)]))


def _check_use_reply(pool: str, reply: Any) -> None:
    if reply not in (b"OK", "OK"):
        raise redis.ConnectionError(f"USE {pool} answered {reply!r}")


def use_pool_on_connect(pool: str) -> Callable[[Any], None]:
    """A ``redis_connect_func`` for ``redis.Redis``: redis-py's handshake (AUTH included), then
    ``USE pool``, on every new connection."""

    def on_connect(connection: Any) -> None:
        connection.on_connect()
        connection.send_command("USE", pool)
        _check_use_reply(pool, connection.read_response())

    return on_connect


def async_use_pool_on_connect(pool: str) -> Callable[[Any], Awaitable[None]]:
    """``use_pool_on_connect`` for ``redis.asyncio.Redis``."""

    async def on_connect(connection: Any) -> None:
        await connection.on_connect()
        await connection.send_command("USE", pool)
        _check_use_reply(pool, await connection.read_response())

    return on_connect


def connect(host: str = "127.0.0.1", port: int = 7480, pool: Optional[str] = None, **redis_options: Any) -> KafkaClient:
    """A ``KafkaClient`` on a new ``redis.Redis(host, port, **redis_options)`` (``username``,
    ``password``, ``protocol``, ...), switched to ``pool`` on every connection when given."""
    if pool is not None:
        redis_options["redis_connect_func"] = use_pool_on_connect(pool)
    return KafkaClient(redis.Redis(host=host, port=port, **redis_options))


def connect_async(
    host: str = "127.0.0.1", port: int = 7480, pool: Optional[str] = None, **redis_options: Any
) -> AsyncKafkaClient:
    """``connect`` for asyncio: an ``AsyncKafkaClient`` on a new ``redis.asyncio.Redis``."""
    if pool is not None:
        redis_options["redis_connect_func"] = async_use_pool_on_connect(pool)
    return AsyncKafkaClient(redis.asyncio.Redis(host=host, port=port, **redis_options))
