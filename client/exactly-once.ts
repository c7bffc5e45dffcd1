/**
 * Consume-transform-produce, exactly once (docs/semantics.md, "Exactly-once"): a batch of input
 * messages, the handler's output messages and the input's committed offsets go into ONE
 * transaction, so either the outputs become visible (to read_committed readers) and the inputs
 * count as consumed, or neither happens and the inputs are read again. Kafka Streams'
 * exactly_once_v2, in one function.
 *
 * Why a crash anywhere is safe:
 * - Before the commit: the transaction is aborted (by the next instance's InitProducer, or by
 *   its timeout), the outputs never become visible, the offsets stay where they were, and the
 *   next instance starts from them.
 * - After the commit: the offsets moved with the outputs, so nobody reads those inputs again.
 * - The outcome is unknown (EndTxn unanswered): InitProducer first settles it for good (the
 *   coordinator finishes a decided transaction and aborts an undecided one), and only then are
 *   the committed offsets read back. Reading them earlier could find the old ones while the
 *   commit completes, and copy the batch twice.
 * - A zombie (an instance that was paused, not dead) is fenced by the new instance's
 *   InitProducer: its commit fails with PRODUCER_FENCED and runTransform rejects with it.
 * - A rebalance while a transaction is open (the broker restarted and the member rejoined, say)
 *   positions the partitions it hands out at the offsets committed at that moment, which the
 *   open transaction may still replace (its EndTxn is retried and commits). So after every
 *   transaction that saw the assignment change, the positions are read again.
 *
 * When a rebalance moves a partition to ANOTHER instance while a transaction of this one is
 * open, that instance's FetchOffsets is answered UNSTABLE_OFFSETS until the transaction ends
 * (Kafka's require_stable, KIP-447), and its consumer waits and asks again, so it never starts
 * from offsets the transaction is about to replace.
 */
import { sleep } from './internal/backoff.js';
import { retryDelay } from './partitioner.js';
import type { PollConsumer } from './poll-consumer.js';
import type { Producer, ProducerMessage } from './producer.js';
import { SluiceError, isSluiceError, type ErrorName } from './protocol/errors.js';
import type { TransactionOffset } from './transaction.js';
import type { Message } from './value-codec.js';

/** What the handler returns for one input: no output, one message, or several. */
export type TransformOutput = ProducerMessage | readonly ProducerMessage[] | null | undefined | void;

export interface TransformOptions {
  /** A PollConsumer with a `group`, `autoCommit: false` and read_committed (the default). */
  consumer: PollConsumer;
  /** A transactional Producer (with `transactionalId`), on the same broker. */
  producer: Producer;
  /** Maps one input message to its outputs. A throw aborts the batch and ends runTransform with that error. */
  handler: (message: Message) => TransformOutput | Promise<TransformOutput>;
  /** Most input messages per transaction. Default 750. */
  batchSize?: number;
  /** Stops after the transaction in progress (the wait for input ends at once). */
  signal?: AbortSignal;
  /** Called after each committed transaction. */
  onCommit?: (batch: { readonly inputs: number; readonly outputs: number }) => void;
  /** Called for each failure that runTransform recovers from (the batch is aborted and read again). */
  onRetry?: (error: unknown) => void;
}

export interface TransformStats {
  /** Committed transactions, and the input and output messages in them. */
  transactions: number;
  inputs: number;
  outputs: number;
  /** Transactions that failed and were aborted (their input was read again). */
  aborted: number;
}

/**
 * Failures after which reading the batch again cannot help: the producer was fenced or closed,
 * the setup is wrong, or the outputs cannot be written as they are.
 */
const FATAL: ReadonlySet<ErrorName> = new Set([
  'PRODUCER_FENCED',
  'CLIENT_CLOSED',
  'INVALID_CONFIG',
  'INVALID_RECORD',
  'RECORD_TOO_LARGE',
  'INVALID_TOPIC',
  'TOPIC_NOT_FOUND',
  'PARTITION_NOT_FOUND',
  'GROUP_NOT_FOUND',
  'ABORTED',
]);

/** The handler threw: runTransform rethrows what it threw, after the abort. */
class HandlerFailure {
  constructor(readonly error: unknown) {}
}

/**
 * Copies and transforms input to output exactly once, in transactions of up to `batchSize`
 * input messages, until `signal` aborts (then resolves with what it did). Rejects with the
 * handler's error if it throws, and with PRODUCER_FENCED when a newer instance with the same
 * transactional id took over; recovers on its own from everything else (a lost connection, a
 * broker restart, a rebalance, an aborted transaction) by aborting the batch and reading its
 * input again from the committed offsets.
 *
 * Output order: within an input partition, outputs are sent in input order, so an output
 * partition fed by one input partition keeps its order.
 */
export async function runTransform(options: TransformOptions): Promise<TransformStats> {
  const { consumer, producer, handler, signal, onCommit, onRetry } = options;
  const batchSize = options.batchSize ?? 750;
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new SluiceError('INVALID_CONFIG', `runTransform batchSize must be a positive integer, got ${String(batchSize)}`);
  if (consumer.group === undefined) throw new SluiceError('INVALID_CONFIG', 'runTransform needs a consumer with a `group`: its offsets are committed in the transactions');
  if (consumer.autoCommit) throw new SluiceError('INVALID_CONFIG', 'runTransform needs a consumer with `autoCommit: false`: offsets are committed only inside transactions');
  if (consumer.isolation !== 'read_committed') throw new SluiceError('INVALID_CONFIG', "runTransform needs a read_committed consumer: it must never copy aborted input");
  if (producer.config.transactionalId === undefined) throw new SluiceError('INVALID_CONFIG', 'runTransform needs a transactional producer: pass `transactionalId`');

  const stats: TransformStats = { transactions: 0, inputs: 0, outputs: 0, aborted: 0 };
  // Settle what an earlier instance left (and fence it) before reading where to start.
  await recover(consumer, producer, signal);
  let failures = 0;
  while (signal?.aborted !== true) {
    const batch = await consumer.fetch({ maxMessages: batchSize, ...(signal === undefined ? {} : { signal }) });
    if (batch.length === 0) continue;
    const assignment = consumer.assignmentChanges;
    let outputs = 0;
    try {
      await producer.transaction(async (tx) => {
        const sends: Promise<unknown>[] = [];
        for (const message of batch) {
          let out: TransformOutput;
          try {
            out = await handler(message);
          } catch (err) {
            throw new HandlerFailure(err);
          }
          if (out === null || out === undefined) continue;
          const list = Array.isArray(out) ? (out as readonly ProducerMessage[]) : [out as ProducerMessage];
          for (const m of list) sends.push(tx.send(m));
          outputs += list.length;
        }
        await Promise.all(sends);
        const member = consumer.groupMember();
        if (member === undefined) throw new SluiceError('UNKNOWN_MEMBER', 'the consumer is not a member of its group right now (it is rejoining)');
        await tx.commitOffsets(member.groupId, nextOffsets(batch), member);
      });
    } catch (err) {
      stats.aborted++;
      if (err instanceof HandlerFailure) throw err.error;
      if (isFatal(err)) throw err;
      onRetry?.(err);
      await pause(retryDelay(failures++), signal);
      await recover(consumer, producer, signal);
      continue;
    }
    failures = 0;
    stats.transactions++;
    stats.inputs += batch.length;
    stats.outputs += outputs;
    onCommit?.({ inputs: batch.length, outputs });
    // A partition (re)assigned while the transaction was open was positioned at the offsets
    // committed before it: read them again now that they are final.
    if (consumer.assignmentChanges !== assignment) {
      await consumer.seekToCommitted().catch(async (err: unknown) => {
        if (isFatal(err)) throw err;
        await recover(consumer, producer, signal);
      });
    }
  }
  return stats;
}

/** The offsets to commit for a batch: each input partition's last offset + 1. */
export function nextOffsets(messages: readonly Message[]): TransactionOffset[] {
  const next = new Map<string, TransactionOffset>();
  for (const m of messages) {
    const key = `${m.topic}\u0000${m.partition}`;
    const seen = next.get(key);
    if (seen === undefined || m.offset + 1 > seen.offset) next.set(key, { topic: m.topic, partition: m.partition, offset: m.offset + 1 });
  }
  return [...next.values()];
}

/**
 * Settles the last transaction for good (InitProducer: completes a decided one, aborts an open
 * one, fences older instances), then moves the consumer back to the committed offsets. Retried
 * until it works, a fatal error, or the signal (then it returns without having recovered).
 */
async function recover(consumer: PollConsumer, producer: Producer, signal: AbortSignal | undefined): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await producer.initTransactions();
      await consumer.seekToCommitted();
      return;
    } catch (err) {
      if (signal?.aborted === true) return; // the loop ends; the next run recovers first
      if (isFatal(err)) throw err;
      await pause(retryDelay(attempt), signal);
    }
  }
}

function isFatal(err: unknown): boolean {
  return !isSluiceError(err) || FATAL.has(err.code);
}

/** Sleeps, ending early (without an error) when the signal aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return sleep(ms, signal).catch(() => undefined);
}
