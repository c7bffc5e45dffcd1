import { createInterface } from 'node:readline';
import { Option, type Command } from 'commander';
import { headerArg, intArg } from '../args.js';
import { emit, withClient } from '../context.js';

const MAX_OUTSTANDING = 10_000;

interface ProduceFlags {
  key?: string;
  header?: Record<string, string>;
  value?: string;
  partition?: number;
}

/**
 * `sluice produce TOPIC`: one message per line of stdin (or `--value`), sent through the
 * batching producer; each result is printed as it is acknowledged under --json.
 */
export function registerProduceCommand(program: Command): void {
  program
    .command('produce <topic>')
    .description('produce messages: one per line of stdin, or --value')
    .option('--key <key>', 'message key (picks the partition by hash)')
    .option('--header <k=v>', 'a header; repeat for more', headerArg)
    .option('--value <value>', 'produce this one message instead of reading stdin')
    .addOption(new Option('--partition <n>', 'explicit partition').argParser(intArg('--partition', 0, 0x7fffffff)))
    .action(async (topic: string, o: ProduceFlags, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const producer = client.producer();
        const pending: Array<Promise<void>> = [];
        const unsettled = new Set<Promise<void>>();
        let count = 0;
        const send = async (value: string): Promise<void> => {
          count++;
          // Bound what a huge stdin can queue: wait for acks once this many are outstanding.
          while (unsettled.size >= MAX_OUTSTANDING) await Promise.race(unsettled).catch(() => undefined);
          const p = producer
              .send({ topic, value, ...(o.key === undefined ? {} : { key: o.key }), ...(o.header === undefined ? {} : { headers: o.header }), ...(o.partition === undefined ? {} : { partition: o.partition }) })
              .then((meta) => {
                if (flags.json) emit(flags, { topic: meta.topic, partition: meta.partition, offset: meta.offset }, '');
              });
          pending.push(p);
          unsettled.add(p);
          const forget = (): void => void unsettled.delete(p);
          p.then(forget, forget);
        };
        if (o.value !== undefined) await send(o.value);
        else for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) await send(line);
        const results = await Promise.allSettled(pending);
        await producer.close();
        const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
        if (failed.length > 0) throw failed[0]?.reason;
        if (!flags.json) process.stdout.write(`produced ${count} message${count === 1 ? '' : 's'} to ${topic}\n`);
      });
    });
}
