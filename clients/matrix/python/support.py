"""What several redis-py scenario files share: reading replies and pub/sub messages, a pub/sub
connection going back to ordinary commands, and the client's pool holding several connections."""

import os
import time

import redis


def as_text(value):
    return value.decode() if isinstance(value, bytes) else value


def wait_message(pubsub, wanted_type, seconds=5.0):
    """The next pub/sub message of `wanted_type` ('subscribe', 'message', ...), within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.5)
        if message and as_text(message["type"]) == wanted_type:
            return message
    raise AssertionError(f"no {wanted_type!r} pub/sub message within {seconds} s")


def back_to_normal_commands(clients, r, pubsub, key):
    """Once nothing is subscribed, the pub/sub connection serves ordinary commands again; then
    the pub/sub object is closed."""
    connection = pubsub.connection
    connection.send_command("SET", key("after"), "back")
    assert as_text(connection.read_response()) == "OK"
    connection.send_command("GET", key("after"))
    assert connection.read_response() == b"back"
    if clients.is_async:
        pubsub.aclose()
    else:
        pubsub.close()
    assert r.delete(key("after")) == 1


def set_through_held_connections(r, names):
    """Takes one connection of `r`'s pool per name, all held at once (so the pool must open or
    reconnect each), SETs each name to itself on its own connection, and returns the connections'
    CLIENT IDs."""
    leased = []
    ids = set()
    try:
        for name in names:
            connection = r.connection_pool.get_connection()
            leased.append(connection)
            try:
                connection.send_command("SET", name, name)
                assert as_text(connection.read_response()) == "OK"
                connection.send_command("CLIENT", "ID")
                ids.add(connection.read_response())
            except redis.ConnectionError:
                # As redis-py does after a failed command: the next use reconnects.
                connection.disconnect()
                raise
    finally:
        for connection in leased:
            # (the asyncio pool wants its own connection back, not the test's wrapper)
            r.connection_pool.release(getattr(connection, "_target", connection))
    return ids


def tenant_prefix():
    return os.environ["RKPROXY_CLIENTS_TENANT_PREFIX"]
