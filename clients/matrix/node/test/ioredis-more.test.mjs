// ioredis through rkproxy: streams with a consumer group, PSUBSCRIBE, and every form of AUTH.
// Not here: a connection pool (ioredis is one connection per client, it has none), client-side
// caching (ioredis has none: it never sends CLIENT TRACKING). A proxy restart is in restart.test.mjs.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Redis } from 'ioredis';
import { TARGETS, PROTOCOLS, TENANT_PREFIX, targetSettings, keys, nextEvent } from './common.mjs';

const VERSION = createRequire(import.meta.url)('ioredis/package.json').version;
const TENANT_USER = process.env.RKPROXY_CLIENTS_TENANT_USER;

function clientMaker(target, protocol) {
  const made = [];
  /** Connects with `settings` (or a URL) and the matrix's options; `USE` for another pool. */
  const connect = async (extra = {}, forTarget = target, url = undefined) => {
    const settings = targetSettings(forTarget);
    const options = { protocol, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null, ...extra };
    const client = url
      ? new Redis(url, options)
      : new Redis({ host: settings.host, port: settings.port, password: settings.password, ...options });
    client.on('error', () => {});
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

async function assertOnTenant(client, untenanted, key) {
  assert.equal(await client.set(key('auth'), 'mine'), 'OK');
  assert.equal(await untenanted.get(TENANT_PREFIX + key('auth')), 'mine');
  assert.equal(await client.del(key('auth')), 1);
}

for (const target of TARGETS) {
  for (const protocol of PROTOCOLS) {
    describe(`ioredis ${VERSION} ${target} RESP${protocol} (more)`, () => {
      const { connect, closeAll } = clientMaker(target, protocol);
      afterEach(closeAll);

      it('streams: XADD, XRANGE, XREAD, XREADGROUP, XACK', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const stream = key('stream', true);
        const first = await r.xadd(stream, '*', 'field', 'one');
        const second = await r.xadd(stream, '*', 'field', 'two');
        assert.deepEqual(await r.xrange(stream, '-', '+'), [[first, ['field', 'one']], [second, ['field', 'two']]]);
        const ids = (reply) => {
          // RESP2: [[name, entries]]; RESP3: a map of name to entries (an object, or pairs).
          const streams = Array.isArray(reply) ? reply : Object.entries(reply);
          return streams.map(([name, entries]) => [String(name), entries.map(([id]) => id)]);
        };
        assert.deepEqual(ids(await r.xread('COUNT', 10, 'STREAMS', stream, first)), [[stream, [second]]]);
        assert.equal(await r.xgroup('CREATE', stream, 'workers', '0'), 'OK');
        const delivered = await r.xreadgroup('GROUP', 'workers', 'alice', 'COUNT', 10, 'STREAMS', stream, '>');
        assert.deepEqual(ids(delivered), [[stream, [first, second]]]);
        assert.equal((await r.xpending(stream, 'workers'))[0], 2);
        assert.equal(await r.xack(stream, 'workers', first, second), 2);
        assert.equal((await r.xpending(stream, 'workers'))[0], 0);
        assert.equal(await r.del(stream), 1);
      });

      it('PSUBSCRIBE, then normal commands on the same client', async () => {
        const key = keys('ioredis');
        const r = await connect();
        const subscriber = await connect();
        const pattern = `${key('news')}.*`;
        const channel = `${key('news')}.sport`;
        assert.equal(await subscriber.psubscribe(pattern), 1);
        const received = nextEvent((resolve) => subscriber.once('pmessage', resolve));
        // As for SUBSCRIBE: on the cluster pool PUBLISH counts only the publishing node's receivers.
        const receivers = await r.publish(channel, 'goal');
        assert.ok((target === 'cluster' ? [0, 1] : [1]).includes(receivers), `PUBLISH counted ${receivers}`);
        assert.deepEqual(await received, [pattern, channel, 'goal']);
        await subscriber.punsubscribe(pattern);
        assert.equal(await subscriber.set(key('after'), 'back'), 'OK');
        assert.equal(await subscriber.get(key('after')), 'back');
        assert.equal(await r.del(key('after')), 1);
      });

      if (target === 'tenant') {
        it('AUTH in every form: password, username, URL, explicit AUTH, wrong password', async () => {
          const key = keys('ioredis');
          const { host, port, password } = targetSettings('tenant');
          const untenanted = await connect({}, 'standalone');
          await assertOnTenant(await connect(), untenanted, key);
          await assertOnTenant(await connect({ username: TENANT_USER }), untenanted, key);
          for (const user of [TENANT_USER, '']) {
            const fromUrl = await connect({}, 'tenant', `redis://${user}:${password}@${host}:${port}`);
            await assertOnTenant(fromUrl, untenanted, key);
          }
          // Without a password ioredis connects (its ready check gets NOAUTH and it goes on) on
          // RESP2; an explicit AUTH command then logs in.
          if (protocol === 2) {
            const later = await connect({ password: undefined, enableReadyCheck: false });
            await assert.rejects(later.get(key('x')), /NOAUTH/);
            assert.equal(await later.auth(TENANT_USER, password), 'OK');
            await assertOnTenant(later, untenanted, key);
          }
          // A wrong password: ioredis emits the WRONGPASS error, and (with no retries) connect()
          // rejects, as against Redis.
          const wrong = new Redis({ host, port, password: 'wrong-password', protocol, lazyConnect: true, retryStrategy: () => null });
          const refused = nextEvent((resolve) => wrong.once('error', resolve));
          await assert.rejects(wrong.connect());
          const [error] = await refused;
          assert.match(String(error), /WRONGPASS/);
          wrong.disconnect();
        });
      }
    });
  }
}
