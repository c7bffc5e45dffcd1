import { Option, type Command } from 'commander';
import { positionArg, type Position } from '../args.js';
import { emit, withClient } from '../context.js';

/** `sluice group list|describe|reset`. */
export function registerGroupCommands(program: Command): void {
  const group = program.command('group').description('list, describe and reset consumer groups');

  group
    .command('list')
    .description('list consumer groups')
    .action(async (_o: unknown, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const groups = await client.admin().listGroups();
        if (!flags.json && groups.length === 0) process.stdout.write('no groups\n');
        for (const g of groups) emit(flags, g, `${g.groupId}\t${g.state}\t${g.memberCount} member${g.memberCount === 1 ? '' : 's'}`);
      });
    });

  group
    .command('describe <group>')
    .description('members, assignments, committed offsets, end offsets and lag')
    .action(async (groupId: string, _o: unknown, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const d = await client.admin().describeGroup(groupId);
        const owner = new Map<string, string>();
        for (const m of d.members) for (const set of m.assignment) for (const p of set.partitions) owner.set(`${set.topic}/${p}`, m.memberId);
        const lines = [
          `group ${d.groupId}  state ${d.state}  epoch ${d.groupEpoch}  members ${d.members.length}`,
          ...d.members.map((m) => `member ${m.memberId}  client ${m.clientId}  epoch ${m.memberEpoch}  partitions ${m.assignment.map((s) => `${s.topic}[${s.partitions.join(',')}]`).join(' ') || '-'}`),
          'topic\tpartition\tcommitted\tend\tlag\tmember',
          ...d.offsets.map((o) => `${o.topic}\t${o.partition}\t${o.committed ?? '-'}\t${o.endOffset}\t${o.lag}\t${owner.get(`${o.topic}/${o.partition}`) ?? '-'}`),
        ];
        emit(flags, d, lines.join('\n'));
      });
    });

  group
    .command('reset <group>')
    .description('move committed offsets (previews unless --execute; the group must have no active members)')
    .requiredOption('--topic <topic>', 'topic whose offsets to reset')
    .addOption(new Option('--to <position>', 'earliest, latest or an offset').makeOptionMandatory().argParser(positionArg('--to')))
    .option('--execute', 'write the new offsets (otherwise only preview them)', false)
    .action(async (groupId: string, o: { topic: string; to: Position; execute: boolean }, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const r = await client.admin().resetGroupOffsets(groupId, o.topic, o.to, { execute: o.execute });
        if (flags.json) {
          for (const p of r.offsets) emit(flags, { ...p, executed: r.executed }, '');
          return;
        }
        for (const p of r.offsets) process.stdout.write(`${p.topic}\t${p.partition}\t${p.previous ?? '-'} -> ${p.offset}\n`);
        process.stdout.write(r.executed ? `reset ${r.offsets.length} partition(s) of group ${groupId}\n` : 'preview only: run again with --execute to apply\n');
      });
    });
}
