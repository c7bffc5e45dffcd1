import { Option, type Command } from 'commander';
import { intArg } from '../args.js';
import { emit, withClient } from '../context.js';

/** `sluice topic create|list|describe|delete`. */
export function registerTopicCommands(program: Command): void {
  const topic = program.command('topic').description('create, list, describe and delete topics');

  topic
    .command('create <name>')
    .description('create a topic')
    .addOption(new Option('--partitions <n>', 'number of partitions').default(1).argParser(intArg('--partitions', 1, 10_000)))
    .addOption(new Option('--retention-ms <ms>', 'delete closed segments older than this').argParser(intArg('--retention-ms', 1, Number.MAX_SAFE_INTEGER)))
    .addOption(new Option('--retention-bytes <bytes>', 'delete the oldest closed segments while a partition holds more than this').argParser(intArg('--retention-bytes', 1, Number.MAX_SAFE_INTEGER)))
    .action(async (name: string, o: { partitions: number; retentionMs?: number; retentionBytes?: number }, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const created = await client.admin().createTopic(name, {
          partitions: o.partitions,
          ...(o.retentionMs === undefined ? {} : { retentionMs: o.retentionMs }),
          ...(o.retentionBytes === undefined ? {} : { retentionBytes: o.retentionBytes }),
        });
        emit(flags, created, `created topic ${created.topic} with ${created.partitions} partition${created.partitions === 1 ? '' : 's'}`);
      });
    });

  topic
    .command('list')
    .description('list topics')
    .action(async (_o: unknown, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const topics = await client.admin().listTopics();
        if (!flags.json && topics.length === 0) process.stdout.write('no topics\n');
        for (const t of topics) emit(flags, t, `${t.topic}\t${t.partitions} partition${t.partitions === 1 ? '' : 's'}`);
      });
    });

  topic
    .command('describe <name>')
    .description('show partitions, offsets and configuration of a topic')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const d = await client.admin().describeTopic(name);
        const setting = (v: number | null): string => (v === null ? 'default' : String(v));
        const lines = [
          `topic ${d.topic}  created ${new Date(d.createdAt).toISOString()}`,
          `retention-ms ${setting(d.config.retentionMs)}  retention-bytes ${setting(d.config.retentionBytes)}  segment-bytes ${setting(d.config.segmentBytes)}`,
          'partition\tstart\tend\tmessages',
          ...d.partitions.map((p) => `${p.partition}\t${p.startOffset}\t${p.endOffset}\t${p.endOffset - p.startOffset}`),
        ];
        emit(flags, d, lines.join('\n'));
      });
    });

  topic
    .command('delete <name>')
    .description('delete a topic and all its messages')
    .action(async (name: string, _o: unknown, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        await client.admin().deleteTopic(name);
        emit(flags, { topic: name, deleted: true }, `deleted topic ${name}`);
      });
    });
}
