import { Option, type Command } from 'commander';
import type { SluiceClient } from '../../client/client.js';
import { SluiceError, hasCode } from '../../client/protocol/errors.js';
import type { SubscriptionConfigInput } from '../../client/protocol/messages/push.js';
import { PollConsumer, type StartFrom } from '../../client/poll-consumer.js';
import type { PushMessage } from '../../client/push-consumer.js';
import type { Message } from '../../client/value-codec.js';
import { intArg, positionArg, type Position } from '../args.js';
import { withClient, type GlobalFlags } from '../context.js';
import { messageJson, valueText } from '../render.js';

interface ConsumeFlags {
  group?: string;
  mode: 'poll' | 'push';
  from: Position;
  count?: number;
  timeout: number;
  follow: boolean;
}

/**
 * `sluice consume TOPIC`: prints one message value per line (JSON lines under --json) and, with
 * --group, commits exactly what it printed. Without --follow it stops after --timeout ms with no
 * new message; --count stops it after N messages either way.
 *
 * `--mode push --group SUBSCRIPTION` reads a push subscription instead (created on first use,
 * starting at --from) and acks each message once it is printed.
 */
export function registerConsumeCommand(program: Command): void {
  program
    .command('consume <topic>')
    .description('print messages from a topic')
    .option('--group <group>', 'consumer group: share partitions and commit progress')
    .addOption(new Option('--mode <mode>', 'poll (long-poll fetch) or push (subscription)').choices(['poll', 'push']).default('poll'))
    .addOption(new Option('--from <position>', 'where to start without a committed offset: earliest, latest or an offset').default('earliest').argParser(positionArg('--from')))
    .addOption(new Option('--count <n>', 'stop after n messages').argParser(intArg('--count', 1, Number.MAX_SAFE_INTEGER)))
    .addOption(new Option('--timeout <ms>', 'without --follow, stop after this long with no new message').default(2_000).argParser(intArg('--timeout', 1, 86_400_000)))
    .option('--follow', 'keep waiting for new messages until interrupted', false)
    .action(async (topic: string, o: ConsumeFlags, cmd: Command) => {
      if (o.mode === 'push') {
        const subscription = o.group;
        if (subscription === undefined) throw new SluiceError('INVALID_CONFIG', '--mode push needs --group SUBSCRIPTION: the push subscription to read');
        await withClient(cmd, (client, flags) => consumePush(client, flags, topic, subscription, o));
        return;
      }
      await withClient(cmd, async (client, flags) => {
        const from: StartFrom = typeof o.from === 'number' ? { offset: o.from } : o.from;
        const stop = new AbortController();
        const onSignal = (): void => stop.abort();
        process.once('SIGINT', onSignal);
        process.once('SIGTERM', onSignal);
        const consumer = new PollConsumer(client.connection, {
          topics: [topic],
          from,
          autoCommit: false,
          maxWaitMs: Math.min(o.timeout, 500),
          ...(o.group === undefined ? {} : { group: o.group }),
        });
        let printed = 0;
        let lastMessageAt = Date.now();
        try {
          while (!stop.signal.aborted) {
            const batch = await consumer.fetch();
            const take = o.count === undefined ? batch : batch.slice(0, o.count - printed);
            for (const m of take) process.stdout.write(flags.json ? `${JSON.stringify(messageJson(m))}\n` : `${valueText(m.value)}\n`);
            printed += take.length;
            if (take.length > 0) {
              lastMessageAt = Date.now();
              if (o.group !== undefined) await consumer.commit(nextOffsets(take));
            }
            if (o.count !== undefined && printed >= o.count) break;
            if (!o.follow && Date.now() - lastMessageAt >= o.timeout) break;
          }
        } finally {
          process.off('SIGINT', onSignal);
          process.off('SIGTERM', onSignal);
          await consumer.close();
        }
      });
    });
}

/** The commit that covers exactly the printed messages: the next offset per partition. */
function nextOffsets(messages: readonly Message[]): { topic: string; partition: number; offset: number }[] {
  const next = new Map<string, { topic: string; partition: number; offset: number }>();
  for (const m of messages) next.set(`${m.topic}\u0000${m.partition}`, { topic: m.topic, partition: m.partition, offset: m.offset + 1 });
  return [...next.values()];
}

/**
 * The push side of `consume`. Each printed message is acked once the next one arrives (or after
 * half the ack wait, whichever is first); the one printed last is acked with a receipt on the
 * way out, so every ack the command made is durable before it exits.
 */
async function consumePush(client: SluiceClient, flags: GlobalFlags, topic: string, subscription: string, o: ConsumeFlags): Promise<void> {
  const create: SubscriptionConfigInput = typeof o.from === 'number' ? { start: 'earliest', startOffset: o.from } : { start: o.from };
  // No more in flight than the command will print: what it never prints goes back unseen.
  const consumer = client.pushConsumer({ topic, subscription, create, prefetch: Math.min(o.count ?? 100, 100) });
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let held: PushMessage | undefined;
  try {
    await consumer.start();
    const holdMs = Math.max(1, Math.floor((consumer.subscriptionConfig?.ackWaitMs ?? 30_000) / 2));
    let printed = 0;
    let lastMessageAt = Date.now();
    let heldSince = 0;
    while (!stop.signal.aborted && (o.count === undefined || printed < o.count)) {
      const idleLeft = o.follow ? Infinity : o.timeout - (Date.now() - lastMessageAt);
      if (idleLeft <= 0) break;
      const wait = Math.min(idleLeft, held === undefined ? Infinity : heldSince + holdMs - Date.now());
      let m: PushMessage | undefined;
      try {
        m = await consumer.receive({ signal: stop.signal, ...(Number.isFinite(wait) ? { timeoutMs: Math.max(0, wait) } : {}) });
      } catch (err) {
        if (hasCode(err, 'ABORTED')) break;
        throw err;
      }
      // Intake stops before the last ack can free credit: nothing is taken that will not be printed.
      if (m !== undefined && o.count !== undefined && printed + 1 >= o.count) void consumer.close().catch(() => undefined);
      if (held !== undefined && (m !== undefined || Date.now() - heldSince >= holdMs)) {
        const previous = held;
        held = undefined;
        await previous.ack();
      }
      if (m === undefined) {
        if (consumer.closed) break;
        continue;
      }
      process.stdout.write(flags.json ? `${JSON.stringify(messageJson(m))}\n` : `${valueText(m.value)}\n`);
      held = m;
      heldSince = lastMessageAt = Date.now();
      printed++;
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    const closing = consumer.close(); // first: no more credit; it waits for the ack below
    try {
      await held?.ack({ receipt: true });
    } finally {
      await closing;
    }
  }
}
