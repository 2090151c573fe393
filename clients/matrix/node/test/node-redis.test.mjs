// node-redis through rkproxy in plain (non-cluster) mode: every target, RESP2 and RESP3.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { randomBytes } from 'node:crypto';
import { RESP_TYPES, WatchError } from 'redis';
import {
  TARGETS, PROTOCOLS, KAFKA_TOPIC, TENANT_PREFIX, targetSettings, keys, parseClientInfo, infoField,
  nextEvent,
} from './common.mjs';
import { clientMaker } from './node-redis-clients.mjs';

// The version CLIENT SETINFO reports is @redis/client's (the `redis` package re-exports it).
const require = createRequire(import.meta.url);
const VERSION = require('redis/package.json').version;
const CLIENT_VERSION = require('@redis/client/package.json').version;

const asBuffers = { [RESP_TYPES.BLOB_STRING]: Buffer };

for (const target of TARGETS) {
  for (const protocol of PROTOCOLS) {
    describe(`node-redis ${VERSION} ${target} RESP${protocol}`, () => {
      const { connect, closeAll } = clientMaker(target, protocol);
      afterEach(closeAll);

      it('connect handshake: HELLO, CLIENT SETINFO, SETNAME, INFO', async () => {
        const r = await connect({ name: 'matrix-node-redis' });
        assert.equal(await r.ping(), 'PONG');
        assert.equal(await r.clientGetName(), 'matrix-node-redis');
        const info = parseClientInfo(await r.sendCommand(['CLIENT', 'INFO']));
        assert.equal(info['lib-name'], 'node-redis');
        assert.equal(info['lib-ver'], CLIENT_VERSION);
        assert.equal(info.resp, String(protocol));
        assert.equal(infoField(await r.info('server'), 'redis_mode'), 'standalone');
      });

      if (target === 'standalone') {
        it('connect with database: SELECT', async () => {
          const key = keys('noderedis');
          const inDb3 = await connect({ database: 3 });
          const inDb0 = await connect();
          assert.equal(await inDb3.set(key('selected'), 'three'), 'OK');
          assert.equal(await inDb3.get(key('selected')), 'three');
          assert.equal(await inDb0.get(key('selected')), null);
          assert.equal(await inDb3.del(key('selected')), 1);
        });
      }

      it('strings, hashes, lists, sets, sorted sets', async () => {
        const key = keys('noderedis');
        const r = await connect();
        assert.equal(await r.set(key('s'), '10'), 'OK');
        assert.equal(await r.incrBy(key('s'), 5), 15);
        assert.equal(await r.append(key('s'), 'x'), 3);
        assert.equal(await r.get(key('s')), '15x');
        assert.equal(await r.set(key('s'), 'v', { EX: 100 }), 'OK');
        assert.ok((await r.ttl(key('s'))) > 0);
        assert.equal(await r.hSet(key('h'), { a: '1', b: '2' }), 2);
        assert.equal(await r.hIncrBy(key('h'), 'a', 41), 42);
        assert.deepEqual({ ...(await r.hGetAll(key('h'))) }, { a: '42', b: '2' });
        assert.equal(await r.rPush(key('l'), ['b', 'c']), 2);
        assert.equal(await r.lPush(key('l'), 'a'), 3);
        assert.deepEqual(await r.lRange(key('l'), 0, -1), ['a', 'b', 'c']);
        assert.equal(await r.sAdd(key('x', true), ['a', 'b', 'c']), 3);
        assert.equal(await r.sAdd(key('y', true), ['b', 'c', 'd']), 3);
        assert.deepEqual((await r.sInter([key('x', true), key('y', true)])).sort(), ['b', 'c']);
        assert.equal(await r.zAdd(key('z'), [{ score: 1, value: 'a' }, { score: 2.5, value: 'b' }, { score: 3, value: 'c' }]), 3);
        assert.equal(Number(await r.zIncrBy(key('z'), 10, 'a')), 11);
        assert.deepEqual(await r.zRangeWithScores(key('z'), 0, -1), [
          { value: 'b', score: 2.5 }, { value: 'c', score: 3 }, { value: 'a', score: 11 },
        ]);
        assert.equal(await r.del([key('s'), key('h'), key('l'), key('x', true), key('y', true), key('z')]), 6);
      });

      it('binary and empty values', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const binary = Buffer.concat([Buffer.from([...Array(256).keys()]), Buffer.from('\r\n\0')]);
        const binaryKey = Buffer.concat([Buffer.from(key('bin')), Buffer.from([0, 0xff, 13, 10])]);
        assert.equal(await r.set(binaryKey, binary), 'OK');
        assert.deepEqual(await r.withTypeMapping(asBuffers).get(binaryKey), binary);
        assert.equal(await r.set(key('empty'), ''), 'OK');
        assert.equal(await r.get(key('empty')), '');
        assert.equal(await r.strLen(key('empty')), 0);
        assert.equal(await r.del([binaryKey, key('empty')]), 2);
      });

      it('a 1 MB value', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const value = randomBytes(1 << 20);
        assert.equal(await r.set(key('big'), value), 'OK');
        assert.deepEqual(await r.withTypeMapping(asBuffers).get(key('big')), value);
        assert.equal(await r.del(key('big')), 1);
      });

      it('a pipeline of 1000 commands', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const writes = r.multi();
        for (let i = 0; i < 1000; i++) writes.set(key(`p${i}`), `value-${i}`);
        assert.deepEqual(await writes.execAsPipeline(), Array(1000).fill('OK'));
        const reads = r.multi();
        for (let i = 0; i < 1000; i++) reads.get(key(`p${i}`));
        assert.deepEqual(await reads.execAsPipeline(), Array.from({ length: 1000 }, (_, i) => `value-${i}`));
        // Commands sent without awaiting each other are pipelined on the one connection too.
        const deleted = await Promise.all(Array.from({ length: 1000 }, (_, i) => r.del(key(`p${i}`))));
        assert.deepEqual(deleted, Array(1000).fill(1));
      });

      it('cross-slot MSET, MGET, DEL', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const names = Array.from({ length: 20 }, (_, i) => key(`m${i}`));
        assert.equal(await r.mSet(names.map((name, i) => [name, `v${i}`])), 'OK');
        assert.deepEqual(await r.mGet([...names, key('missing')]), [...names.map((_, i) => `v${i}`), null]);
        assert.equal(await r.exists(names), 20);
        assert.equal(await r.del(names), 20);
      });

      it('SCAN to the end', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const names = Array.from({ length: 150 }, (_, i) => key(`scan${i}`));
        assert.equal(await r.mSet(names.map((name) => [name, 'x'])), 'OK');
        const found = [];
        let cursor = '0';
        for (let round = 0; round < 10000; round++) {
          const reply = await r.scan(cursor, { MATCH: key('scan*'), COUNT: 20 });
          found.push(...reply.keys);
          cursor = String(reply.cursor);
          if (cursor === '0') break;
        }
        assert.equal(cursor, '0');
        // SCAN may return a key twice (while a node rehashes); every key once at least.
        assert.deepEqual([...new Set(found)].sort(), [...names].sort());
        assert.equal(await r.del(names), 150);
      });

      it('MULTI/EXEC and WATCH on one hash tag', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const other = await connect();
        const results = await r.multi().set(key('a', true), '1').incr(key('a', true)).rPush(key('b', true), ['x', 'y']).exec();
        assert.deepEqual(results, ['OK', 2, 2]);
        assert.equal(await r.watch(key('a', true)), 'OK');
        assert.equal(await r.get(key('a', true)), '2');
        assert.equal(await other.set(key('a', true), 'changed'), 'OK');
        await assert.rejects(r.multi().set(key('a', true), 'mine').exec(), WatchError);
        assert.equal(await r.get(key('a', true)), 'changed');
        assert.equal(await r.watch(key('a', true)), 'OK');
        assert.deepEqual(await r.multi().set(key('a', true), 'mine').exec(), ['OK']);
        assert.equal(await r.get(key('a', true)), 'mine');
        assert.equal(await r.del([key('a', true), key('b', true)]), 2);
      });

      it('BLPOP with a timeout', async () => {
        const key = keys('noderedis');
        const r = await connect();
        // Both keys in one slot: across slots a cluster pool answers CROSSSLOT, as Redis Cluster.
        const [empty, queue] = [key('empty', true), key('queue', true)];
        const started = Date.now();
        assert.equal(await r.blPop(empty, 0.3), null);
        assert.ok(Date.now() - started >= 250);
        assert.equal(await r.rPush(queue, 'job'), 1);
        assert.deepEqual({ ...(await r.blPop([empty, queue], 1)) }, { key: queue, element: 'job' });
        assert.equal(await r.set(key('after'), 'normal'), 'OK');
        assert.equal(await r.get(key('after')), 'normal');
        assert.equal(await r.del(key('after')), 1);
      });

      it('SUBSCRIBE, then normal commands on the same client', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const subscriber = await connect();
        const channel = key('channel');
        let deliver;
        const received = nextEvent((resolve) => { deliver = resolve; });
        await subscriber.subscribe(channel, (message, from) => deliver(message, from));
        // Redis Cluster counts only the receivers on the node that took the PUBLISH (the message
        // still reaches every node), so on the cluster pool the count may be 0.
        const receivers = await r.publish(channel, 'hello');
        assert.ok((target === 'cluster' ? [0, 1] : [1]).includes(receivers), `PUBLISH counted ${receivers}`);
        assert.deepEqual(await received, ['hello', channel]);
        await subscriber.unsubscribe(channel);
        // node-redis 6.3.1 on RESP2 hands the replies after UNSUBSCRIBE over as Buffers (against
        // redis-server directly too), hence String().
        assert.equal(String(await subscriber.set(key('after'), 'back')), 'OK');
        assert.equal(String(await subscriber.get(key('after'))), 'back');
        assert.equal(await r.del(key('after')), 1);
      });

      it('EVAL', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const script = "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), #ARGV}";
        assert.deepEqual(await r.eval(script, { keys: [key('e')], arguments: ['scripted', 'extra'] }), ['scripted', 2]);
        assert.equal(await r.get(key('e')), 'scripted');
        assert.equal(await r.del(key('e')), 1);
      });

      if (target === 'tenant') {
        it('the tenant\'s keys carry its prefix', async () => {
          const key = keys('noderedis');
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
    describe(`node-redis ${VERSION} kafka RESP${protocol}`, () => {
      const { connect, closeAll } = clientMaker('kafka', protocol);
      afterEach(closeAll);

      it('KPUSH and KPOP by partition and offset (raw commands)', async () => {
        const r = await connect();
        assert.deepEqual([...(await r.sendCommand(['KPARTITIONS', KAFKA_TOPIC]))].sort(), [0, 1]);
        const value = Buffer.concat([Buffer.from([0x6e, 0, 0xff]), randomBytes(16)]);
        const [partition, offset] = await r.sendCommand(['KPUSH', KAFKA_TOPIC, '1', value]);
        assert.equal(partition, 1);
        assert.ok(offset >= 0);
        const record = await r.sendCommand(['KPOP', KAFKA_TOPIC, '1', String(offset)], { typeMapping: asBuffers });
        assert.deepEqual([...record], [1, offset, value]);
      });
    });
  }
}
