// node-redis through rkproxy: streams with a consumer group, PSUBSCRIBE, every form of AUTH, its
// client pool after AUTH, and client-side caching (refused by the proxy). The pool after a proxy
// restart is in restart.test.mjs.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createClientPool } from 'redis';
import { TARGETS, PROTOCOLS, TENANT_PREFIX, targetSettings, keys, nextEvent } from './common.mjs';
import { clientMaker } from './node-redis-clients.mjs';

const VERSION = createRequire(import.meta.url)('redis/package.json').version;
const TENANT_USER = process.env.RKPROXY_CLIENTS_TENANT_USER;

/** What `client` writes lands under the tenant's prefix. */
async function assertOnTenant(client, untenanted, key) {
  assert.equal(await client.set(key('auth'), 'mine'), 'OK');
  assert.equal(await untenanted.get(TENANT_PREFIX + key('auth')), 'mine');
  assert.equal(await client.del(key('auth')), 1);
}

for (const target of TARGETS) {
  for (const protocol of PROTOCOLS) {
    describe(`node-redis ${VERSION} ${target} RESP${protocol} (more)`, () => {
      const { connect, track, closeAll } = clientMaker(target, protocol);
      afterEach(closeAll);

      it('streams: XADD, XRANGE, XREAD, XREADGROUP, XACK', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const stream = key('stream', true);
        const first = await r.xAdd(stream, '*', { field: 'one' });
        const second = await r.xAdd(stream, '*', { field: 'two' });
        const entries = (await r.xRange(stream, '-', '+')).map(({ id, message }) => [id, { ...message }]);
        assert.deepEqual(entries, [[first, { field: 'one' }], [second, { field: 'two' }]]);
        const ids = (reply) => {
          // RESP2: [{ name, messages }]; RESP3: an object (or Map) of name to messages.
          const streams = Array.isArray(reply)
            ? reply.map(({ name, messages }) => [name, messages])
            : Object.entries(reply instanceof Map ? Object.fromEntries(reply) : reply);
          return streams.map(([name, messages]) => [String(name), messages.map((m) => m.id ?? m[0])]);
        };
        assert.deepEqual(ids(await r.xRead({ key: stream, id: first }, { COUNT: 10 })), [[stream, [second]]]);
        assert.equal(await r.xGroupCreate(stream, 'workers', '0'), 'OK');
        const delivered = await r.xReadGroup('workers', 'alice', { key: stream, id: '>' }, { COUNT: 10 });
        assert.deepEqual(ids(delivered), [[stream, [first, second]]]);
        assert.equal((await r.xPending(stream, 'workers')).pending, 2);
        assert.equal(await r.xAck(stream, 'workers', [first, second]), 2);
        assert.equal((await r.xPending(stream, 'workers')).pending, 0);
        assert.equal(await r.del(stream), 1);
      });

      it('PSUBSCRIBE, then normal commands on the same client', async () => {
        const key = keys('noderedis');
        const r = await connect();
        const subscriber = await connect();
        const pattern = `${key('news')}.*`;
        const channel = `${key('news')}.sport`;
        let deliver;
        const received = nextEvent((resolve) => { deliver = resolve; });
        await subscriber.pSubscribe(pattern, (message, from) => deliver(message, from));
        // As for SUBSCRIBE: on the cluster pool PUBLISH counts only the publishing node's receivers.
        const receivers = await r.publish(channel, 'goal');
        assert.ok((target === 'cluster' ? [0, 1] : [1]).includes(receivers), `PUBLISH counted ${receivers}`);
        assert.deepEqual(await received, ['goal', channel]);
        await subscriber.pUnsubscribe(pattern);
        // As after UNSUBSCRIBE, node-redis 6.3.1 on RESP2 hands replies over as Buffers.
        assert.equal(String(await subscriber.set(key('after'), 'back')), 'OK');
        assert.equal(String(await subscriber.get(key('after'))), 'back');
        assert.equal(await r.del(key('after')), 1);
      });

      if (target === 'tenant') {
        it('AUTH in every form: password, username, URL, explicit AUTH, wrong password', async () => {
          const key = keys('noderedis');
          const { host, port, password } = targetSettings('tenant');
          const untenanted = await connect({}, 'standalone');
          await assertOnTenant(await connect(), untenanted, key);
          await assertOnTenant(await connect({ username: TENANT_USER }), untenanted, key);
          for (const user of [TENANT_USER, '']) {
            const fromUrl = await connect({ url: `redis://${user}:${password}@${host}:${port}`, password: undefined });
            await assertOnTenant(fromUrl, untenanted, key);
          }
          // node-redis authenticates at connect only when it has credentials; without them (RESP2,
          // so no HELLO) it connects, and an explicit AUTH command logs in.
          if (protocol === 2) {
            const later = await connect({ password: undefined, RESP: 2 });
            await assert.rejects(later.get(key('x')), /NOAUTH/);
            assert.equal(await later.auth({ username: TENANT_USER, password }), 'OK');
            await assertOnTenant(later, untenanted, key);
          }
          await assert.rejects(connect({ password: 'wrong-password' }), /WRONGPASS/);
        });
      }

      if (target !== 'standalone') {
        it('the client pool after AUTH: every pooled client on the tenant / pool', async () => {
          const key = keys('noderedis');
          const { host, port, password, pool: poolName } = targetSettings(target);
          const pool = createClientPool(
            { socket: { host, port, reconnectStrategy: false }, password, RESP: protocol },
            { minimum: 1, maximum: 6 },
          );
          pool.on('error', () => {});
          track(pool);
          await pool.connect();
          const names = Array.from({ length: 6 }, (_, i) => key(`pooled${i}`));
          // Six tasks that hold their client at once: the pool opens six connections.
          const ids = await Promise.all(names.map((name) => pool.execute(async (client) => {
            if (poolName) assert.equal(await client.sendCommand(['USE', poolName]), 'OK');
            assert.equal(await client.set(name, name), 'OK');
            const id = await client.clientId();
            await client.blPop(key(`never${name}`, true), 0.2);
            if (poolName) assert.equal(await client.sendCommand(['USE', 'standalone']), 'OK');
            return id;
          })));
          assert.equal(new Set(ids).size, names.length);
          const standalone = await connect({}, 'standalone');
          if (target === 'tenant') {
            assert.equal(await standalone.exists(names.map((name) => TENANT_PREFIX + name)), names.length);
            assert.equal(await pool.del(names), names.length);
          } else {
            assert.equal(await standalone.exists(names), 0);
            const cluster = await connect();
            assert.equal(await cluster.del(names), names.length);
          }
        });
      }

      if (protocol === 3) {
        it('client-side caching: the refused CLIENT TRACKING is an error at connect, not a hang', async () => {
          const started = Date.now();
          await assert.rejects(
            connect({ clientSideCache: { ttl: 0, maxEntries: 0 } }),
            /CLIENT TRACKING is not supported by rkproxy/,
          );
          assert.ok(Date.now() - started < 5000);
        });
      }
    });
  }
}
