// The helpers against a real rkproxy and Kafka broker, run by `cargo xtask clients`, which passes
// RKPROXY_CLIENTS_HELPERS_* (see clients/python-rkproxy/tests/conftest.py for their meaning).

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, describe, test } from 'node:test';

import { createClient, ErrorReply } from 'redis';

import { EARLIEST, KafkaCommands, KafkaError, LATEST, usePoolOnConnect } from '../src/index.js';

function setting(name: string): string {
  const value = process.env[`RKPROXY_CLIENTS_HELPERS_${name}`];
  if (!value) throw new Error(`RKPROXY_CLIENTS_HELPERS_${name} is not set: run \`cargo xtask clients\``);
  return value;
}

const [host, port] = setting('PROXY').split(':');
const settings = {
  host,
  port: Number(port),
  username: setting('USER'),
  password: setting('PASSWORD'),
  pool: setting('POOL'),
  downPool: setting('DOWN_POOL'),
  topic: setting('TOPIC'),
};
const managedTopic = `${settings.topic}-managed-node`;

const opened: Array<{ destroy(): void }> = [];
after(() => opened.forEach((client) => client.destroy()));

/** A connected client of the tenant, on `pool` from every connection; errors are collected. */
async function connect(pool: string, options: { port?: number; RESP?: 2 | 3 } = {}) {
  const client = createClient({
    socket: { host: settings.host, port: options.port ?? settings.port, reconnectStrategy: 50 },
    username: settings.username,
    password: settings.password,
    RESP: options.RESP ?? 3,
  });
  const errors: unknown[] = [];
  client.on('error', (error) => errors.push(error));
  usePoolOnConnect(client, pool);
  await client.connect();
  opened.push(client);
  return { client, kafka: new KafkaCommands(client), errors };
}

/** A TCP relay to the proxy whose connections the test can cut, as a network failure would. */
function startRelay(): Promise<{ port: number; accepted: () => number; cutAll: () => void; close: () => void }> {
  const sockets = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((clientSide) => {
    accepted += 1;
    const upstream = net.connect(settings.port, settings.host);
    for (const [from, to] of [[clientSide, upstream], [upstream, clientSide]]) {
      sockets.add(from);
      from.pipe(to);
      from.on('error', () => to.destroy());
      from.on('close', () => to.destroy());
    }
  });
  const cutAll = () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
  };
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as net.AddressInfo;
      resolve({ port: address.port, accepted: () => accepted, cutAll, close: () => { cutAll(); server.close(); } });
    });
  });
}

/**
 * The first reply of `call` once the connection is back: a result, or the error reply rkproxy gave.
 * Only connection errors (the reconnect is under way) are retried, for at most 10 s.
 */
async function firstReply<T>(call: () => Promise<T>): Promise<T | ErrorReply> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      return await call();
    } catch (error) {
      if (error instanceof ErrorReply) return error;
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

for (const RESP of [2, 3] as const) {
  describe(`RESP${RESP}`, () => {
    test('kpush then kpop by partition and offset', async () => {
      const { kafka } = await connect(settings.pool, { RESP });
      const value = Buffer.concat([Buffer.from([0x6e, 0, 0xff, 13, 10]), randomBytes(8)]);
      const pushed = await kafka.kpush(settings.topic, value, 1);
      assert.equal(pushed.partition, 1);
      assert.ok(pushed.offset >= 0);
      assert.deepEqual(await kafka.kpop(settings.topic, 1, pushed.offset), { partition: 1, offset: pushed.offset, value });
      const empty = await kafka.kpush(settings.topic, Buffer.alloc(0), 1);
      const records = await kafka.kpop(settings.topic, 1, pushed.offset, 2);
      assert.equal(records.length, 2);
      assert.deepEqual(records[0], { partition: 1, offset: pushed.offset, value });
      assert.deepEqual(await kafka.kpop(settings.topic, 1, empty.offset), {
        partition: 1,
        offset: empty.offset,
        value: Buffer.alloc(0),
      });
    });

    test('kpartitions, koffset, and kpop past the end', async () => {
      const { kafka } = await connect(settings.pool, { RESP });
      assert.deepEqual(await kafka.kpartitions(settings.topic), [0, 1]);
      const before = Date.now() - 1;
      const pushed = await kafka.kpush(settings.topic, 'timed');
      const latest = await kafka.koffset(settings.topic, pushed.partition, LATEST);
      assert.ok(latest.offset > pushed.offset);
      assert.equal(latest.timestamp, -1);
      assert.deepEqual(await kafka.koffset(settings.topic, pushed.partition, EARLIEST), { offset: 0, timestamp: -1 });
      const atTime = await kafka.koffset(settings.topic, pushed.partition, before);
      assert.ok(atTime.offset <= pushed.offset && atTime.timestamp >= before);
      assert.equal(await kafka.kpop(settings.topic, pushed.partition, latest.offset + 1000), null);
      assert.deepEqual(await kafka.kpop(settings.topic, pushed.partition, latest.offset + 1000, 5), []);
    });
  });
}

test('managed kpop gives each record once', async () => {
  const { kafka } = await connect(settings.pool);
  const values = [0, 1, 2].map((index) => `managed-${index}-${randomBytes(4).toString('hex')}`);
  for (const value of values) await kafka.kpush(managedTopic, value);
  const popped: string[] = [];
  for (let attempt = 0; attempt < 50; attempt += 1) {
    const record = await kafka.kpop(managedTopic);
    if (record === null) break;
    popped.push(record.value?.toString() ?? '<tombstone>');
  }
  assert.deepEqual(popped.sort(), values.sort());
});

test('Kafka errors reject with KafkaError and its Kafka name; other refusals stay ErrorReply', async () => {
  const { kafka: down } = await connect(settings.downPool);
  await assert.rejects(down.kpush(settings.topic, 'nowhere'), (error: unknown) => {
    assert.ok(error instanceof KafkaError);
    assert.ok(error instanceof ErrorReply);
    assert.equal(error.kafkaErrorName, 'BROKER_NOT_AVAILABLE');
    return true;
  });
  await assert.rejects(down.kpop(settings.topic), KafkaError);
  const { kafka } = await connect(settings.pool);
  await assert.rejects(kafka.kpush('no-such-topic', 'x'), (error: unknown) => {
    assert.ok(error instanceof ErrorReply && !(error instanceof KafkaError));
    assert.match(error.message, /unknown topic 'no-such-topic'/);
    return true;
  });
});

for (const RESP of [2, 3] as const) {
  test(`RESP${RESP}: a reconnected client is authenticated and on the Kafka pool again`, async () => {
    const relay = await startRelay();
    try {
      const { kafka, errors } = await connect(settings.pool, { port: relay.port, RESP });
      await kafka.kpush(settings.topic, 'before the cut', 0);
      relay.cutAll();
      // node-redis reconnects by itself; the hook queued USE after its handshake.
      const pushed = await firstReply(() => kafka.kpush(settings.topic, 'after the cut', 0));
      if (pushed instanceof ErrorReply) throw pushed;
      const record = await kafka.kpop(settings.topic, 0, pushed.offset);
      assert.equal(record?.value?.toString(), 'after the cut');
      assert.equal(relay.accepted(), 2);
      assert.ok(errors.every((error) => !(error instanceof ErrorReply)), `no refused USE: ${errors}`);
    } finally {
      relay.close();
    }
  });
}

test('without the hook, a reconnected client is back on the default pool', async () => {
  const relay = await startRelay();
  try {
    const client = createClient({
      socket: { host: settings.host, port: relay.port, reconnectStrategy: 50 },
      username: settings.username,
      password: settings.password,
    });
    client.on('error', () => {});
    await client.connect();
    opened.push(client);
    assert.equal(await client.sendCommand(['USE', settings.pool]), 'OK');
    const kafka = new KafkaCommands(client);
    await kafka.kpush(settings.topic, 'before the cut', 0);
    relay.cutAll();
    const reply = await firstReply(() => kafka.kpush(settings.topic, 'after the cut', 0));
    assert.ok(reply instanceof ErrorReply, `KPUSH without USE gave ${JSON.stringify(reply)}`);
    assert.match(reply.message, /uses Redis pool/);
  } finally {
    relay.close();
  }
});
