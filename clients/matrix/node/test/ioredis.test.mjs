// ioredis through rkproxy in plain (non-cluster) mode: every target, RESP2 and RESP3.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import {
  TARGETS, PROTOCOLS, KAFKA_TOPIC, TENANT_PREFIX, targetSettings, keys, parseClientInfo, infoField,
  nextEvent,
} from './common.mjs';

const VERSION = createRequire(import.meta.url)('ioredis/package.json').version;

/** Clients for one describe block, closed after each test. ioredis has no connect hook: `USE` is
 * sent after connecting (a reconnect would fall back to the default pool). */
function clientMaker(target, protocol) {
  const made = [];
  const connect = async (extra = {}, forTarget = target) => {
    const settings = targetSettings(forTarget);
    const client = new Redis({
      host: settings.host,
      port: settings.port,
      password: settings.password,
      protocol,
      lazyConnect: true,
      maxRetriesPerRequest: 1,
      ...extra,
    });
    made.push(client);
    await client.connect();
    if (settings.pool) assert.equal(await client.call('USE', settings.pool), 'OK');
    return client;
  };
  const closeAll = () => {
    for (const client of made.splice(0)) client.disconnect();
  };
  return { connect, closeAll };
}

for (const target of TARGETS) {
  for (const protocol of PROTOCOLS) {
    describe(`ioredis ${VERSION} ${target} RESP${protocol}`, () => {
      const { connect, closeAll } = clientMaker(target, protocol);
      afterEach(closeAll);

      it('connect handshake: HELLO, CLIENT SETINFO, SETNAME, INFO ready check', async () => {
        const r = await connect({ connectionName: 'matrix-ioredis' });
        assert.equal(await r.ping(), 'PONG');
        assert.equal(await r.client('GETNAME'), 'matrix-ioredis');
        const info = parseClientInfo(await r.client('INFO'));
        assert.equal(info['lib-name'], 'ioredis');
        assert.equal(info['lib-ver'], VERSION);
        assert.equal(info.resp, String(protocol));
        assert.equal(infoField(await r.info('server'), 'redis_mode'), 'standalone');
      });

      if (target === 'standalone') {
        it('connect with db: SELECT', async () => {
          const key = keys('ioredis');
          const inDb3 = await connect({ db: 3 });
          const inDb0 = await connect();
          assert.equal(await inDb3.set(key('selected'), 'three'), 'OK');
          assert.equal(await inDb3.get(key('selected')), 'three');
          assert.equal(await inDb0.get(key('selected')), null);
          assert.equal(await inDb3.del(key('selected')), 1);
        });
      }

      it('strings, hashes, lists, sets, sorted sets', async () => {
        const key = keys('ioredis');
        const r = await connect();
        assert.equal(await r.set(key('s'), '10'), 'OK');
        assert.equal(await r.incrby(key('s'), 5), 15);
        assert.equal(await r.append(key('s'), 'x'), 3);
        assert.equal(await r.get(key('s')), '15x');
        assert.equal(await r.set(key('s'), 'v', 'EX', 100), 'OK');
        assert.ok((await r.ttl(key('s'))) > 0);
        assert.equal(await r.hset(key('h'), { a: '1', b: '2' }), 2);
        assert.equal(await r.hincrby(key('h'), 'a', 41), 42);
        assert.deepEqual(await r.hgetall(key('h')), { a: '42', b: '2' });
        assert.equal(await r.rpush(key('l'), 'b', 'c'), 2);
        assert.equal(await r.lpush(key('l'), 'a'), 3);
        assert.deepEqual(await r.lrange(key('l'), 0, -1), ['a', 'b', 'c']);
        assert.equal(await r.sadd(key('x', true), 'a', 'b', 'c'), 3);
        assert.equal(await r.sadd(key('y', true), 'b', 'c', 'd'), 3);
        assert.deepEqual((await r.sinter(key('x', true), key('y', true))).sort(), ['b', 'c']);
        assert.equal(await r.zadd(key('z'), 1, 'a', 2.5, 'b', 3, 'c'), 3);
        assert.equal(Number(await r.zincrby(key('z'), 10, 'a')), 11);
        assert.deepEqual(await r.zrange(key('z'), 0, -1, 'WITHSCORES'), ['b', '2.5', 'c', '3', 'a', '11']);
        assert.equal(await r.del(key('s'), key('h'), key('l'), key('x', true), key('y', true), key('z')), 6);
      });

      it('binary and empty values', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const binary = Buffer.concat([Buffer.from([...Array(256).keys()]), Buffer.from('\r\n\0')]);
        const binaryKey = Buffer.concat([Buffer.from(key('bin')), Buffer.from([0, 0xff, 13, 10])]);
        assert.equal(await r.set(binaryKey, binary), 'OK');
        assert.deepEqual(await r.getBuffer(binaryKey), binary);
        assert.equal(await r.set(key('empty'), ''), 'OK');
        assert.equal(await r.get(key('empty')), '');
        assert.equal(await r.strlen(key('empty')), 0);
        assert.equal(await r.del(binaryKey, key('empty')), 2);
      });

      it('a 1 MB value', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const value = randomBytes(1 << 20);
        assert.equal(await r.set(key('big'), value), 'OK');
        assert.deepEqual(await r.getBuffer(key('big')), value);
        assert.equal(await r.del(key('big')), 1);
      });

      it('a pipeline of 1000 commands', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const writes = r.pipeline();
        for (let i = 0; i < 1000; i++) writes.set(key(`p${i}`), `value-${i}`);
        const written = await writes.exec();
        assert.deepEqual(written, Array.from({ length: 1000 }, () => [null, 'OK']));
        const reads = r.pipeline();
        for (let i = 0; i < 1000; i++) reads.get(key(`p${i}`));
        const read = await reads.exec();
        assert.deepEqual(read, Array.from({ length: 1000 }, (_, i) => [null, `value-${i}`]));
        const names = Array.from({ length: 1000 }, (_, i) => key(`p${i}`));
        assert.equal(await r.del(...names), 1000);
      });

      it('cross-slot MSET, MGET, DEL', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const names = Array.from({ length: 20 }, (_, i) => key(`m${i}`));
        assert.equal(await r.mset(Object.fromEntries(names.map((name, i) => [name, `v${i}`]))), 'OK');
        assert.deepEqual(await r.mget(...names, key('missing')), [...names.map((_, i) => `v${i}`), null]);
        assert.equal(await r.exists(...names), 20);
        assert.equal(await r.del(...names), 20);
      });

      it('SCAN to the end', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const names = Array.from({ length: 150 }, (_, i) => key(`scan${i}`));
        assert.equal(await r.mset(Object.fromEntries(names.map((name) => [name, 'x']))), 'OK');
        const found = [];
        let cursor = '0';
        for (let round = 0; round < 10000; round++) {
          const [next, batch] = await r.scan(cursor, 'MATCH', key('scan*'), 'COUNT', 20);
          found.push(...batch);
          cursor = next;
          if (cursor === '0') break;
        }
        assert.equal(cursor, '0');
        // SCAN may return a key twice (while a node rehashes); every key once at least.
        assert.deepEqual([...new Set(found)].sort(), [...names].sort());
        assert.equal(await r.del(...names), 150);
      });

      it('MULTI/EXEC and WATCH on one hash tag', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const other = await connect();
        const results = await r.multi().set(key('a', true), '1').incr(key('a', true)).rpush(key('b', true), 'x', 'y').exec();
        assert.deepEqual(results, [[null, 'OK'], [null, 2], [null, 2]]);
        assert.equal(await r.watch(key('a', true)), 'OK');
        assert.equal(await r.get(key('a', true)), '2');
        assert.equal(await other.set(key('a', true), 'changed'), 'OK');
        assert.equal(await r.multi().set(key('a', true), 'mine').exec(), null);
        assert.equal(await r.get(key('a', true)), 'changed');
        assert.equal(await r.watch(key('a', true)), 'OK');
        assert.deepEqual(await r.multi().set(key('a', true), 'mine').exec(), [[null, 'OK']]);
        assert.equal(await r.get(key('a', true)), 'mine');
        assert.equal(await r.del(key('a', true), key('b', true)), 2);
      });

      it('BLPOP with a timeout', async () => {
        const key = keys('ioredis');
        const r = await connect();
        // Both keys in one slot: across slots a cluster pool answers CROSSSLOT, as Redis Cluster.
        const [empty, queue] = [key('empty', true), key('queue', true)];
        const started = Date.now();
        assert.equal(await r.blpop(empty, 0.3), null);
        assert.ok(Date.now() - started >= 250);
        assert.equal(await r.rpush(queue, 'job'), 1);
        assert.deepEqual(await r.blpop(empty, queue, 1), [queue, 'job']);
        assert.equal(await r.set(key('after'), 'normal'), 'OK');
        assert.equal(await r.get(key('after')), 'normal');
        assert.equal(await r.del(key('after')), 1);
      });

      it('SUBSCRIBE, then normal commands on the same client', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const subscriber = await connect();
        const channel = key('channel');
        assert.equal(await subscriber.subscribe(channel), 1);
        const received = nextEvent((resolve) => subscriber.once('message', resolve));
        // Redis Cluster counts only the receivers on the node that took the PUBLISH (the message
        // still reaches every node), so on the cluster pool the count may be 0.
        const receivers = await r.publish(channel, 'hello');
        assert.ok((target === 'cluster' ? [0, 1] : [1]).includes(receivers), `PUBLISH counted ${receivers}`);
        assert.deepEqual(await received, [channel, 'hello']);
        await subscriber.unsubscribe(channel);
        assert.equal(await subscriber.set(key('after'), 'back'), 'OK');
        assert.equal(await subscriber.get(key('after')), 'back');
        assert.equal(await r.del(key('after')), 1);
      });

      it('EVAL', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const script = "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), #ARGV}";
        assert.deepEqual(await r.eval(script, 1, key('e'), 'scripted', 'extra'), ['scripted', 2]);
        assert.equal(await r.get(key('e')), 'scripted');
        assert.equal(await r.del(key('e')), 1);
      });

      if (target === 'tenant') {
        it('the tenant\'s keys carry its prefix', async () => {
          const key = keys('ioredis');
          const r = await connect();
          const untenanted = await connect({}, 'standalone');
          assert.equal(await r.set(key('mine'), 'tenant-value'), 'OK');
          assert.equal(await untenanted.get(TENANT_PREFIX + key('mine')), 'tenant-value');
          assert.equal(await untenanted.get(key('mine')), null);
          assert.equal(await r.del(key('mine')), 1);
        });
      }
    });
  }
}

if (KAFKA_TOPIC) {
  for (const protocol of PROTOCOLS) {
    describe(`ioredis ${VERSION} kafka RESP${protocol}`, () => {
      const { connect, closeAll } = clientMaker('kafka', protocol);
      afterEach(closeAll);

      it('KPUSH and KPOP by partition and offset (raw commands)', async () => {
        const r = await connect();
        assert.deepEqual((await r.call('KPARTITIONS', KAFKA_TOPIC)).sort(), [0, 1]);
        const value = Buffer.concat([Buffer.from([0x6e, 0, 0xff]), randomBytes(16)]);
        const [partition, offset] = await r.call('KPUSH', KAFKA_TOPIC, '1', value);
        assert.equal(partition, 1);
        assert.ok(offset >= 0);
        assert.deepEqual(await r.callBuffer('KPOP', KAFKA_TOPIC, '1', String(offset)), [1, offset, value]);
      });
    });
  }
}
