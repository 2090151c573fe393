// ioredis and node-redis when the proxy they talk to is restarted on the same port: the suite's own
// proxy (proxy-process.mjs), so no other suite sees it. Each test writes keys before the restart,
// restarts the proxy, waits (bounded) for the first command to succeed, then checks where the keys
// written after it landed: AUTH is re-sent by both clients when they reconnect, a `USE` sent by
// hand is not (neither has a connect hook for it), so those keys are back on the tenant's
// default pool.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Redis } from 'ioredis';
import { createClientPool } from 'redis';
import { PROTOCOLS, TENANT_PREFIX, targetSettings, keys, sleep } from './common.mjs';
import { clientMaker } from './node-redis-clients.mjs';
import { ProxyProcess } from './proxy-process.mjs';

const require = createRequire(import.meta.url);
const IOREDIS_VERSION = require('ioredis/package.json').version;
const REDIS_VERSION = require('redis/package.json').version;

// How long a client may take to serve again after the proxy listens again.
const RECOVERY_MS = 10_000;

/** Runs `command` until it resolves, at most RECOVERY_MS; returns its value. */
async function firstSuccess(command) {
  const deadline = Date.now() + RECOVERY_MS;
  for (;;) {
    try {
      return await command();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`no success within ${RECOVERY_MS} ms: ${error}`);
      await sleep(100);
    }
  }
}

/** Where `names` (each set to itself) landed: in Redis under the tenant's prefix (the tenant's
 * default pool), or in the cluster (read through the shared proxy's cluster pool). */
async function assertLanded(connect, names, where) {
  const prefixed = names.map((name) => TENANT_PREFIX + name);
  const direct = await connect({}, 'redis');
  const cluster = await connect({}, 'cluster');
  const inRedis = await direct.mGet(prefixed);
  const inCluster = await cluster.mGet(prefixed);
  assert.deepEqual(where === 'redis' ? inRedis : inCluster, names);
  assert.deepEqual(where === 'redis' ? inCluster : inRedis, names.map(() => null));
  await direct.del(prefixed);
  await cluster.del(prefixed);
}

for (const protocol of PROTOCOLS) {
  describe(`restarting the proxy under a client, RESP${protocol}`, () => {
    const proxy = new ProxyProcess();
    const { connect, track, closeAll } = clientMaker('restart', protocol);
    before(() => proxy.start());
    afterEach(closeAll);
    after(() => proxy.stop());

    /** `client` (one connection, `USE cluster` sent by hand) writes on the cluster, the proxy
     * restarts, the client reconnects by itself and serves within RECOVERY_MS: with AUTH (the
     * tenant's prefix) but without the USE, so on the tenant's default pool. */
    async function reconnectsWithoutUse(client, key) {
      assert.equal(await client.set(key('before'), key('before')), 'OK');
      await assertLanded(connect, [key('before')], 'cluster');

      await proxy.restart();

      assert.equal(await firstSuccess(() => client.set(key('after'), key('after'))), 'OK');
      assert.equal(await client.get(key('after')), key('after'));
      await assertLanded(connect, [key('after')], 'redis');
    }

    it(`ioredis ${IOREDIS_VERSION}: reconnects by itself with AUTH; a USE sent by hand is lost`, async () => {
      const key = keys('ioredis');
      const { host, port, password } = targetSettings('restart');
      const client = new Redis({ host, port, password, protocol, maxRetriesPerRequest: 1 });
      client.on('error', () => {});
      track({ close: () => client.disconnect() });
      assert.equal(await client.call('USE', 'cluster'), 'OK');
      await reconnectsWithoutUse(client, key);
    });

    it(`node-redis ${REDIS_VERSION} createClient: reconnects by itself with AUTH; a USE sent by hand is lost`, async () => {
      const key = keys('noderedis');
      // With node-redis's default reconnect strategy (the matrix's other clients have none).
      const { host, port } = targetSettings('restart');
      await reconnectsWithoutUse(await connect({ socket: { host, port } }, 'restart-cluster'), key);
    });

    it(`node-redis ${REDIS_VERSION} createClientPool: every pooled client serves again, with AUTH`, async () => {
      const key = keys('noderedis');
      const { host, port, password } = targetSettings('restart');
      const pool = createClientPool({ socket: { host, port }, password, RESP: protocol }, { minimum: 1, maximum: 4 });
      pool.on('error', () => {});
      track(pool);
      await pool.connect();
      // Four tasks that hold their client at once: the pool opens four connections.
      const holdingFour = (label) => Promise.all([0, 1, 2, 3].map((index) => pool.execute(async (client) => {
        const name = key(`${label}${index}`);
        assert.equal(await client.set(name, name), 'OK');
        await client.blPop(key(`never${label}${index}`), 0.2);
        return name;
      })));
      await assertLanded(connect, await holdingFour('before'), 'redis');

      await proxy.restart();

      assert.equal(await firstSuccess(() => pool.set(key('first'), key('first'))), 'OK');
      const after = await firstSuccess(() => holdingFour('after'));
      await assertLanded(connect, [key('first'), ...after], 'redis');
    });
  });
}
