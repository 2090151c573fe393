// The node-redis clients of the node-redis suites (node-redis.test.mjs, node-redis-more.test.mjs,
// restart.test.mjs): one maker, so every file connects the same way.
import assert from 'node:assert/strict';
import { createClient } from 'redis';
import { targetSettings } from './common.mjs';

/** Clients for one describe block, closed by `closeAll` (after each test). `USE` for another
 * pool is sent once after connecting; `track` takes anything else to close (a client pool). */
export function clientMaker(target, protocol) {
  const made = [];
  const connect = async (extra = {}, forTarget = target) => {
    const settings = targetSettings(forTarget);
    const client = createClient({
      socket: { host: settings.host, port: settings.port, reconnectStrategy: false },
      password: settings.password,
      RESP: protocol,
      ...extra,
    });
    client.on('error', () => {});
    made.push(client);
    await client.connect();
    if (settings.pool) assert.equal(await client.sendCommand(['USE', settings.pool]), 'OK');
    return client;
  };
  const track = (closable) => made.push(closable);
  const closeAll = async () => {
    for (const client of made.splice(0)) {
      try {
        if (client.isOpen !== false) await (client.close ?? client.destroy).call(client);
      } catch {
        // already closed by the test
      }
    }
  };
  return { connect, track, closeAll };
}
