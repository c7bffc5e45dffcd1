import { Packr } from 'msgpackr';
import type { Command } from 'commander';
import { DLQ_HEADERS } from '../../broker/push/dead-letters.js';
import type { SluiceClient } from '../../client/client.js';
import type { Producer } from '../../client/producer.js';
import { CONTENT_TYPE, MSGPACK, TEXT, type Message } from '../../client/value-codec.js';
import { emit, withClient } from '../context.js';

/** Headers a dead letter gained on its way to the dead-letter topic; a redriven message drops them. */
const DLQ_PREFIX = 'sluice-dlq-';
/** The same settings as client/value-codec.ts, so a msgpack value re-encodes as it was sent. */
const packr = new Packr({ useRecords: false, moreTypes: false });

interface RedriveFlags {
  subscription: string;
  deadLetterTopic?: string;
}

/** `sluice dlq redrive`: dead letters back to where they came from. */
export function registerDlqCommands(program: Command): void {
  const dlq = program.command('dlq').description('work with dead-letter topics');

  dlq
    .command('redrive <topic>')
    .description('re-produce a subscription\'s dead letters to their original topic (every subscription of that topic sees them again)')
    .requiredOption('--subscription <name>', 'the subscription whose dead letters to move back')
    .option('--dead-letter-topic <topic>', 'where the dead letters are (default TOPIC.dlq)')
    .action(async (topic: string, o: RedriveFlags, cmd: Command) => {
      await withClient(cmd, async (client, flags) => {
        const redriven = await redrive(client, o.deadLetterTopic ?? `${topic}.dlq`, o.subscription);
        emit(flags, { redriven }, `redrove ${redriven} dead letter${redriven === 1 ? '' : 's'} of subscription ${o.subscription} to ${topic}`);
      });
    });
}

/**
 * Reads the dead-letter topic in the group `sluice-redrive.SUBSCRIPTION` (so a second run picks
 * up where the first stopped) up to its end as of the start, re-produces the subscription's
 * letters to their original topic, and commits once they are acknowledged. At-least-once: a
 * crash between producing and committing redrives those letters again.
 */
async function redrive(client: SluiceClient, deadLetterTopic: string, subscription: string): Promise<number> {
  const ends = new Map((await client.admin().listOffsets(deadLetterTopic, 'latest')).map((p) => [p.partition, p.offset]));
  const seen = new Map<number, number>();
  const caughtUp = (): boolean => [...ends].every(([partition, end]) => (seen.get(partition) ?? -1) + 1 >= end);
  const consumer = client.pollConsumer({ topics: [deadLetterTopic], group: `sluice-redrive.${subscription}`, from: 'earliest', autoCommit: false, maxWaitMs: 300 });
  const producer = client.producer();
  let redriven = 0;
  try {
    while (!caughtUp()) {
      const batch = await consumer.fetch();
      if (batch.length === 0) break; // nothing more for this group (it may have committed past the end)
      const sends = [];
      for (const m of batch) {
        seen.set(m.partition, m.offset);
        if (m.headers[DLQ_HEADERS.subscription]?.toString('utf8') !== subscription) continue;
        sends.push(reproduce(producer, m));
      }
      await Promise.all(sends);
      redriven += sends.length;
      await consumer.commit();
    }
  } finally {
    await consumer.close();
  }
  return redriven;
}

function reproduce(producer: Producer, letter: Message): Promise<unknown> {
  const origin = letter.headers[DLQ_HEADERS.topic]?.toString('utf8');
  if (origin === undefined || origin === '') throw new Error(`dead letter at ${letter.topic}/${letter.partition}@${letter.offset} has no ${DLQ_HEADERS.topic} header`);
  const headers: Record<string, Buffer> = {};
  for (const [k, v] of Object.entries(letter.headers)) if (!k.startsWith(DLQ_PREFIX)) headers[k] = v;
  return producer.send({ topic: origin, key: letter.key, value: valueBytes(letter), headers });
}

/** The value's bytes as stored: the consumer decoded it by its content-type; encode it back the same way. */
function valueBytes(m: Message): Buffer | null {
  if (m.value === null || Buffer.isBuffer(m.value)) return m.value;
  const contentType = m.headers[CONTENT_TYPE]?.toString('utf8');
  if (contentType === TEXT && typeof m.value === 'string') return Buffer.from(m.value, 'utf8');
  if (contentType === MSGPACK) return packr.pack(m.value);
  throw new Error(`cannot re-encode the value of ${m.topic}/${m.partition}@${m.offset}`);
}
