// What the Node suites share: the targets `cargo xtask clients` passes in the environment (see
// clients/matrix/python/conftest.py for the full list), unique key names, and small helpers.
import { randomBytes } from 'node:crypto';

export const TARGETS = ['standalone', 'cluster', 'tenant'];
export const PROTOCOLS = [2, 3];
export const KAFKA_TOPIC = process.env.RKPROXY_CLIENTS_KAFKA_TOPIC;
export const TENANT_PREFIX = process.env.RKPROXY_CLIENTS_TENANT_PREFIX;

function hostPort(envName) {
  const value = process.env[envName];
  if (!value) throw new Error(`${envName} is not set (run through \`cargo xtask clients\`)`);
  const split = value.lastIndexOf(':');
  return { host: value.slice(0, split), port: Number(value.slice(split + 1)) };
}

/** Address, password and the pool to `USE` after connecting, for a target. `restart` and
 * `restart-cluster` are the tenant on the suite's own restartable proxy (proxy-process.mjs),
 * `redis` the standalone Redis without any proxy. */
export function targetSettings(target) {
  if (target === 'tenant' || target === 'restart' || target === 'restart-cluster') {
    const proxy = target === 'tenant' ? 'RKPROXY_CLIENTS_TENANT_PROXY' : 'RKPROXY_CLIENTS_RESTART_PROXY';
    return {
      ...hostPort(proxy),
      password: process.env.RKPROXY_CLIENTS_TENANT_PASSWORD,
      pool: target === 'restart-cluster' ? 'cluster' : null,
    };
  }
  if (target === 'redis') return { ...hostPort('RKPROXY_CLIENTS_REDIS'), password: undefined, pool: null };
  const pool = { standalone: null, cluster: 'cluster', kafka: 'kafka' }[target];
  return { ...hostPort('RKPROXY_CLIENTS_PROXY'), password: undefined, pool };
}

/** Unique key names for one test: `key('a')`; `key('a', true)` shares a hash tag. */
export function keys(language) {
  const token = randomBytes(6).toString('hex');
  return (suffix, tagged = false) =>
    tagged ? `{${language}:${token}}:${suffix}` : `${language}:${token}:${suffix}`;
}

/** `CLIENT INFO`'s `field=value` line as an object. */
export function parseClientInfo(line) {
  return Object.fromEntries(
    String(line)
      .trim()
      .split(' ')
      .map((pair) => {
        const split = pair.indexOf('=');
        return [pair.slice(0, split), pair.slice(split + 1)];
      }),
  );
}

/** A field of an INFO reply. */
export function infoField(info, name) {
  const line = String(info)
    .split('\r\n')
    .find((entry) => entry.startsWith(`${name}:`));
  return line === undefined ? undefined : line.slice(name.length + 1);
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Resolves with the first value `register` hands to its callback, or rejects after `ms`. */
export function nextEvent(register, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no event within ${ms} ms`)), ms);
    register((...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}
