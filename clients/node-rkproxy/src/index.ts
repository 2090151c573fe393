/**
 * Kafka through rkproxy, on node-redis.
 *
 * rkproxy serves Apache Kafka topics through four Redis-style commands on its Kafka pools: KPUSH,
 * KPOP, KPARTITIONS and KOFFSET. {@link KafkaCommands} sends them with a node-redis client and
 * returns typed results (values as Buffers).
 *
 * Kafka's own errors (`ERR kafka OFFSET_OUT_OF_RANGE: ...`) reject with {@link KafkaError}, an
 * `ErrorReply` whose `kafkaErrorName` is Kafka's error name; other refusals (an unknown topic, a
 * permission, a wrong partition) stay node-redis's `ErrorReply`.
 *
 * `USE <pool>` holds for one connection only, and node-redis connects again on its own after a
 * dropped connection. {@link usePoolOnConnect} queues `USE pool` right after node-redis's own
 * handshake (HELLO or AUTH, SELECT, CLIENT SETINFO) on every connection, before any other command.
 */

import { ErrorReply, RESP_TYPES } from 'redis';

/** KOFFSET time for the offset after the last record. */
export const LATEST = -1;
/** KOFFSET time for the earliest offset Kafka still keeps. */
export const EARLIEST = -2;

/** Where KPUSH wrote a record, once Kafka acknowledged it. */
export interface Pushed {
  partition: number;
  offset: number;
}

/** A record read by KPOP; `value` is null for a Kafka tombstone. */
export interface KafkaRecord {
  partition: number;
  offset: number;
  value: Buffer | null;
}

/** KOFFSET's answer: the offset, and the record's timestamp in ms (-1 when Kafka gives none). */
export interface OffsetAt {
  offset: number;
  timestamp: number;
}

/** What the helpers need from a node-redis client (`createClient()` gives it). */
export interface CommandSender {
  sendCommand(
    args: ReadonlyArray<string | Buffer>,
    options?: { asap?: boolean; typeMapping?: Record<number, unknown> }
  ): Promise<unknown>;
}

/** What the connect hook needs: node-redis's `connect` event, and its `error` event to report to. */
export interface ConnectingClient extends CommandSender {
  on(event: 'connect', listener: () => void): unknown;
  emit(event: 'error', error: unknown): boolean;
}

/** An error Kafka reported through rkproxy. */
export class KafkaError extends ErrorReply {
  /** Kafka's error name: OFFSET_OUT_OF_RANGE, BROKER_NOT_AVAILABLE, REQUEST_TIMED_OUT, ... */
  readonly kafkaErrorName: string;

  constructor(kafkaErrorName: string, message: string) {
    super(message);
    this.name = 'KafkaError';
    this.kafkaErrorName = kafkaErrorName;
  }
}

// rkproxy writes Kafka's errors as `kafka NAME: details`, alone (`ERR kafka NAME: ...`) or inside a
// pool error (`ERR kafka pool 'p' unavailable: kafka NAME: ...`).
const KAFKA_ERROR_NAME = /(?:^|\s)kafka ([A-Z][A-Z0-9_]*): /;

/** The KafkaError for an error reply that carries a Kafka error name, else the error itself. */
function asKafkaError(error: unknown): unknown {
  if (!(error instanceof ErrorReply)) return error;
  const found = KAFKA_ERROR_NAME.exec(error.message);
  return found ? new KafkaError(found[1], error.message) : error;
}

// Values (blob strings) as Buffers, whatever the client's own type mapping is.
const VALUES_AS_BUFFERS = { [RESP_TYPES.BLOB_STRING]: Buffer };

function unexpected(command: string, reply: unknown): Error {
  return new Error(`rkproxy-kafka: unexpected ${command} reply ${JSON.stringify(reply)}`);
}

function integers(command: string, reply: unknown, length?: number): number[] {
  if (!Array.isArray(reply) || (length !== undefined && reply.length !== length)) {
    throw unexpected(command, reply);
  }
  return reply.map((item) => {
    if (typeof item !== 'number') throw unexpected(command, reply);
    return item;
  });
}

function toRecord(reply: unknown): KafkaRecord {
  if (!Array.isArray(reply) || reply.length !== 3) throw unexpected('KPOP', reply);
  const [partition, offset] = integers('KPOP', reply.slice(0, 2), 2);
  const value = reply[2];
  if (value !== null && !Buffer.isBuffer(value)) throw unexpected('KPOP', reply);
  return { partition, offset, value };
}

/** KPUSH, KPOP, KPARTITIONS and KOFFSET over a node-redis client that is on a Kafka pool. */
export class KafkaCommands {
  constructor(readonly client: CommandSender) {}

  private async call(args: Array<string | Buffer>): Promise<unknown> {
    try {
      return await this.client.sendCommand(args, { typeMapping: VALUES_AS_BUFFERS });
    } catch (error) {
      throw asKafkaError(error);
    }
  }

  /** Writes `value` to `topic` (to `partition`, else round-robin); resolves to where it went. */
  async kpush(topic: string, value: string | Buffer, partition?: number): Promise<Pushed> {
    const args = partition === undefined ? ['KPUSH', topic, value] : ['KPUSH', topic, String(partition), value];
    const [where, offset] = integers('KPUSH', await this.call(args), 2);
    return { partition: where, offset };
  }

  /** The next record of `topic` for this tenant (each record once per consumer group), or null. */
  kpop(topic: string): Promise<KafkaRecord | null>;
  /** The record at or after `offset` in `partition`, or null. */
  kpop(topic: string, partition: number, offset: number): Promise<KafkaRecord | null>;
  /** Up to `count` records at or after `offset` in `partition`. */
  kpop(topic: string, partition: number, offset: number, count: number): Promise<KafkaRecord[]>;
  async kpop(
    topic: string,
    partition?: number,
    offset?: number,
    count?: number
  ): Promise<KafkaRecord | null | KafkaRecord[]> {
    if ((partition === undefined) !== (offset === undefined)) {
      throw new TypeError('kpop: give both partition and offset, or neither');
    }
    const args = ['KPOP', topic];
    if (partition !== undefined && offset !== undefined) args.push(String(partition), String(offset));
    if (count !== undefined) args.push(String(count));
    const reply = await this.call(args);
    if (count !== undefined) {
      if (!Array.isArray(reply)) throw unexpected('KPOP', reply);
      return reply.map(toRecord);
    }
    return reply === null ? null : toRecord(reply);
  }

  /** The topic's partition ids. */
  async kpartitions(topic: string): Promise<number[]> {
    return integers('KPARTITIONS', await this.call(['KPARTITIONS', topic]));
  }

  /** The first offset at or after `time` (ms), or {@link LATEST} / {@link EARLIEST}. */
  async koffset(topic: string, partition: number, time: number): Promise<OffsetAt> {
    const reply = await this.call(['KOFFSET', topic, String(partition), String(time)]);
    const [offset, timestamp] = integers('KOFFSET', reply, 2);
    return { offset, timestamp };
  }
}

/**
 * Sends `USE pool` on every connection `client` opens, right after node-redis's handshake and
 * before any other queued command. Call it before `client.connect()`. A refused USE is reported
 * on the client's `error` event. It needs node-redis's offline queue (on by default): with
 * `disableOfflineQueue: true` node-redis refuses commands until the handshake is over.
 */
export function usePoolOnConnect<T extends ConnectingClient>(client: T, pool: string): T {
  client.on('connect', () => {
    // `asap` puts USE at the front of the queue; the handshake node-redis queues next (also asap)
    // goes in front of it, so the order on the wire is: handshake, USE, the waiting commands.
    client.sendCommand(['USE', pool], { asap: true }).catch((error: unknown) => {
      client.emit('error', error);
    });
  });
  return client;
}
