import { describe, expect, it } from 'vitest';
import type { Connection } from '../../../client/connection.js';
import { Producer, type ProducerOptions } from '../../../client/producer.js';
import { SluiceError, hasCode, type ErrorName } from '../../../client/protocol/errors.js';
import type { ErrorBody } from '../../../client/protocol/messages/error.js';
import type { ProduceRequest, ProduceResult } from '../../../client/protocol/messages/produce.js';
import { decodeRecords, readBatchHeader, type BatchHeader } from '../../../client/protocol/record-batch.js';
import { rejection } from '../../helpers/async.js';

/** What the fake broker does with one Produce entry: write it, or answer an error. */
type Outcome = 'write' | { readonly error: ErrorBody } | { readonly fail: SluiceError };

interface Sent {
  readonly partition: number;
  readonly header: BatchHeader;
  readonly values: string[];
}

/**
 * A connection without a broker: InitProducer hands out ids 100, 101, ...; Produce writes every
 * batch unless `script` says otherwise for the next one. Enough to check what the producer puts
 * in batch headers and how it reacts to each answer.
 */
class FakeBroker {
  readonly sent: Sent[] = [];
  readonly inits: unknown[] = [];
  readonly script: Outcome[] = [];
  initFailure: SluiceError | undefined;
  /** Produce answers wait for this, when set. */
  gate: Promise<void> | undefined;
  #nextId = 100;
  readonly #ends = new Map<number, number>();

  readonly connection = {
    state: 'connected',
    server: undefined,
    request: async (api: string, body: unknown): Promise<unknown> => {
      await Promise.resolve();
      if (api === 'InitProducer') {
        this.inits.push(body);
        if (this.initFailure !== undefined) throw this.initFailure;
        return { producerId: this.#nextId++, producerEpoch: 0 };
      }
      if (api !== 'Produce') throw new Error(`unexpected ${api}`);
      const req = body as ProduceRequest;
      const results: ProduceResult[] = [];
      for (const { topic, partition, batch } of req.batches) {
        const header = readBatchHeader(batch);
        this.sent.push({ partition, header, values: decodeRecords(batch).map((r) => r.value!.toString()) });
        const outcome = this.script.shift() ?? 'write';
        if (typeof outcome === 'object' && 'fail' in outcome) throw outcome.fail;
        if (outcome === 'write') {
          const base = this.#ends.get(partition) ?? 0;
          this.#ends.set(partition, base + header.recordCount);
          results.push({ topic, partition, baseOffset: base, lastOffset: base + header.recordCount - 1 });
        } else results.push({ topic, partition, baseOffset: -1, lastOffset: -1, error: outcome.error });
      }
      await this.gate;
      return { results };
    },
  };

  producer(options: ProducerOptions = {}): Producer {
    return new Producer(this.connection as unknown as Connection, { lingerMs: 0, retries: 3, ...options });
  }

  /** [producerId, epoch, baseSequence, count] of every batch sent to `partition`, retries included. */
  stamps(partition: number): [number, number, number, number][] {
    return this.sent.filter((s) => s.partition === partition).map((s) => [s.header.producerId, s.header.producerEpoch, s.header.baseSequence, s.header.recordCount]);
  }
}

const error = (name: ErrorName): { error: ErrorBody } => ({ error: { code: new SluiceError(name).wireCode, name, message: name } });
const send = (p: Producer, partition: number, value: string): Promise<unknown> => p.send({ topic: 't', partition, value });

describe('Producer: idempotence against a fake broker', () => {
  it('asks for a producer id once, lazily, and numbers each partition on its own', async () => {
    const broker = new FakeBroker();
    const p = broker.producer();
    expect(broker.inits).toEqual([]);
    await Promise.all([send(p, 0, 'a'), send(p, 1, 'b'), send(p, 0, 'c')]);
    await Promise.all([send(p, 0, 'd'), send(p, 1, 'e')]);
    expect(broker.inits).toEqual([{}]);
    expect(broker.stamps(0)).toEqual([
      [100, 0, 0, 2],
      [100, 0, 2, 1],
    ]);
    expect(broker.stamps(1)).toEqual([
      [100, 0, 0, 1],
      [100, 0, 1, 1],
    ]);
    expect(p.identity).toEqual({ producerId: 100, producerEpoch: 0 });
  });

  it('resends the same bytes after a retriable failure, so the broker can recognise the retry', async () => {
    const broker = new FakeBroker();
    broker.script.push({ fail: new SluiceError('CONNECTION_CLOSED', 'cut') });
    const p = broker.producer();
    await send(p, 0, 'a');
    await send(p, 0, 'b');
    expect(broker.stamps(0)).toEqual([
      [100, 0, 0, 1],
      [100, 0, 0, 1],
      [100, 0, 1, 1],
    ]);
  });

  it('a batch refused before it was written gives its sequence numbers to the next batch', async () => {
    const broker = new FakeBroker();
    const p = broker.producer();
    await send(p, 0, 'a');
    broker.script.push(error('RECORD_TOO_LARGE'));
    expect(hasCode(await rejection(send(p, 0, 'b')), 'RECORD_TOO_LARGE')).toBe(true);
    await send(p, 0, 'c');
    expect(broker.stamps(0)).toEqual([
      [100, 0, 0, 1],
      [100, 0, 1, 1],
      [100, 0, 1, 1],
    ]);
  });

  it('OUT_OF_ORDER_SEQUENCE or UNKNOWN_PRODUCER fails those sends; the next batches go under a fresh producer id from 0', async () => {
    const broker = new FakeBroker();
    const p = broker.producer();
    await send(p, 0, 'a');
    await send(p, 1, 'x');
    broker.script.push(error('OUT_OF_ORDER_SEQUENCE'));
    expect(hasCode(await rejection(send(p, 0, 'b')), 'OUT_OF_ORDER_SEQUENCE')).toBe(true);
    await send(p, 0, 'c');
    await send(p, 1, 'y');
    expect(broker.stamps(0)).toEqual([
      [100, 0, 0, 1],
      [100, 0, 1, 1],
      [101, 0, 0, 1],
    ]);
    expect(broker.stamps(1)).toEqual([
      [100, 0, 0, 1],
      [101, 0, 0, 1],
    ]);
    broker.script.push(error('UNKNOWN_PRODUCER'));
    expect(hasCode(await rejection(send(p, 1, 'z')), 'UNKNOWN_PRODUCER')).toBe(true);
    await send(p, 1, 'z again');
    expect(broker.stamps(1).at(-1)).toEqual([102, 0, 0, 1]);
  });

  it('retries exhausted: the outcome is unknown, so the producer also moves to a fresh id', async () => {
    const broker = new FakeBroker();
    const p = broker.producer({ retries: 1 });
    broker.script.push({ fail: new SluiceError('REQUEST_TIMEOUT') }, { fail: new SluiceError('REQUEST_TIMEOUT') });
    expect(hasCode(await rejection(send(p, 0, 'a')), 'REQUEST_TIMEOUT')).toBe(true);
    await send(p, 0, 'b');
    expect(broker.stamps(0)).toEqual([
      [100, 0, 0, 1],
      [100, 0, 0, 1],
      [101, 0, 0, 1],
    ]);
  });

  it('PRODUCER_FENCED fails every pending send and closes the producer', async () => {
    const broker = new FakeBroker();
    const p = broker.producer();
    await send(p, 0, 'a');
    broker.script.push(error('PRODUCER_FENCED'));
    let open!: () => void;
    broker.gate = new Promise((r) => (open = r));
    const fenced = send(p, 0, 'b');
    while (broker.sent.length < 2) await new Promise((r) => setImmediate(r));
    const waiting = send(p, 0, 'c'); // in the open batch behind the one on the wire
    open();
    expect(hasCode(await rejection(fenced), 'PRODUCER_FENCED')).toBe(true);
    expect(hasCode(await rejection(waiting), 'PRODUCER_FENCED')).toBe(true);
    expect(hasCode(await rejection(send(p, 0, 'later')), 'PRODUCER_FENCED')).toBe(true);
    expect(broker.sent.map((s) => s.values)).toEqual([['a'], ['b']]);
  });

  it('a failed InitProducer fails the waiting sends; the next send asks again', async () => {
    const broker = new FakeBroker();
    broker.initFailure = new SluiceError('UNKNOWN_OPCODE', 'an older broker');
    const p = broker.producer();
    expect(hasCode(await rejection(send(p, 0, 'a')), 'UNKNOWN_OPCODE')).toBe(true);
    broker.initFailure = undefined;
    await send(p, 0, 'b');
    expect(broker.inits.length).toBe(2);
    expect(broker.stamps(0)).toEqual([[100, 0, 0, 1]]);
  });

  it('idempotent: false sends plain batches and never asks for an id', async () => {
    const broker = new FakeBroker();
    const p = broker.producer({ idempotent: false });
    await send(p, 0, 'a');
    expect(broker.inits).toEqual([]);
    expect(broker.stamps(0)).toEqual([[-1, -1, -1, 1]]);
  });
});
