// A rkproxy process of this suite's own, to restart under a client. `cargo xtask clients` writes
// its configuration (the key-prefixed tenant on the standalone pool, allowed to `USE cluster`, on
// a port no other suite uses) and passes RKPROXY_CLIENTS_RESTART_BINARY, _RESTART_CONFIG and
// _RESTART_PROXY. Every wait here is bounded.
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import net from 'node:net';
import { sleep } from './common.mjs';

const START_MS = 30_000;
const STOP_MS = 15_000;

function canConnect(host, port) {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(200, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export class ProxyProcess {
  constructor() {
    this.binary = process.env.RKPROXY_CLIENTS_RESTART_BINARY;
    this.config = process.env.RKPROXY_CLIENTS_RESTART_CONFIG;
    const address = process.env.RKPROXY_CLIENTS_RESTART_PROXY;
    if (!this.binary || !this.config || !address) {
      throw new Error('RKPROXY_CLIENTS_RESTART_* are not set (run through `cargo xtask clients`)');
    }
    const split = address.lastIndexOf(':');
    this.host = address.slice(0, split);
    this.port = Number(address.slice(split + 1));
    this.child = null;
  }

  /** Starts rkproxy without the suite's RKPROXY_* variables (rkproxy reads every RKPROXY_
   * variable as a configuration key) and waits until it accepts connections. */
  async start() {
    const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('RKPROXY_')));
    const log = openSync(`${this.config}.log`, 'a');
    const child = spawn(this.binary, ['--config', this.config], { env, stdio: ['ignore', log, log] });
    closeSync(log);
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', resolve));
    const deadline = Date.now() + START_MS;
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`rkproxy exited at start (${child.exitCode ?? child.signalCode}), see ${this.config}.log`);
      }
      if (await canConnect(this.host, this.port)) return;
      await sleep(50);
    }
    throw new Error(`rkproxy did not listen on ${this.host}:${this.port} within ${START_MS} ms`);
  }

  /** SIGTERM (rkproxy closes idle connections and exits), SIGKILL if it has not within STOP_MS. */
  async stop() {
    if (!this.child) return;
    const child = this.child;
    this.child = null;
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const stopped = await Promise.race([this.exited.then(() => true), sleep(STOP_MS).then(() => false)]);
    if (!stopped) {
      child.kill('SIGKILL');
      await this.exited;
    }
  }

  /** Stopped, then started again on the same port. */
  async restart() {
    await this.stop();
    await this.start();
  }
}
