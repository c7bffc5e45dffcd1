import { Option, type Command } from 'commander';
import { SluiceError } from '../../client/protocol/errors.js';
import { PollConsumer, type StartFrom } from '../../client/poll-consumer.js';
import type { Message } from '../../client/value-codec.js';
import { intArg, positionArg, type Position } from '../args.js';
import { withClient } from '../context.js';
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
        throw new SluiceError('INVALID_CONFIG', '--mode push needs push subscriptions, which this broker version does not have yet; use --mode poll');
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
