import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Broker } from '../../../broker/broker.js';
import { decodeBody, encodeBody } from '../../../client/protocol/body.js';
import { FrameFlags, encodeFrame } from '../../../client/protocol/frame.js';
import { parseSettleRequest } from '../../../client/protocol/messages/push.js';
import { Opcode } from '../../../client/protocol/opcodes.js';
import { MemoryLogger } from '../../helpers/logger.js';
import { tempDir } from '../../helpers/temp-dir.js';

/**
 * docs/protocol.md against the code: the opcode table lists every opcode of
 * client/protocol/opcodes.ts (each one the broker serves on its own row), and the byte-level
 * Hello and Settle examples are what the real encoder and a real broker with default settings
 * produce.
 */
const PROTOCOL_MD = readFileSync(fileURLToPath(new URL('../../../docs/protocol.md', import.meta.url)), 'utf8');

/** The lines under `heading`, up to the next heading of any level. */
function section(markdown: string, heading: string): string[] {
  const lines = markdown.split(/\r?\n/);
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start === -1) throw new Error(`no "${heading}" heading`);
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^#{1,6}\s/.test(line)) break;
    out.push(line);
  }
  return out;
}

/** The first fenced code block after the first line that starts with `lead`, as a Buffer of its hex bytes. */
function hexBlockAfter(markdown: string, lead: string): Buffer {
  const lines = markdown.split(/\r?\n/);
  const at = lines.findIndex((l) => l.startsWith(lead));
  if (at === -1) throw new Error(`no line starting with "${lead}"`);
  const open = lines.findIndex((l, i) => i > at && l.startsWith('```'));
  const close = lines.findIndex((l, i) => i > open && l.startsWith('```'));
  if (open === -1 || close === -1) throw new Error(`no code block after "${lead}"`);
  const hex = lines.slice(open + 1, close).join(' ').trim().split(/\s+/);
  if (!hex.every((b) => /^[0-9a-f]{2}$/.test(b))) throw new Error(`the block after "${lead}" is not plain hex bytes`);
  return Buffer.from(hex.join(''), 'hex');
}

interface OpcodeRow {
  readonly from: number;
  readonly to: number;
  readonly name: string;
  /** The rest of the row after the name cell. */
  readonly rest: string;
}

/** Rows of the opcode table: `| \`0x10\` | Name |` or a range `| \`0x40\`-\`0x47\` | ... |`; `others` is skipped. */
function opcodeRows(markdown: string): OpcodeRow[] {
  const rows: OpcodeRow[] = [];
  for (const line of section(markdown, '## Opcodes')) {
    const m = /^\|\s*`0x([0-9a-f]{2})`(?:-`0x([0-9a-f]{2})`)?\s*\|\s*([^|]*?)\s*\|(.*)$/i.exec(line.trim());
    if (m === null) continue;
    const from = Number.parseInt(m[1]!, 16);
    rows.push({ from, to: m[2] === undefined ? from : Number.parseInt(m[2], 16), name: m[3]!, rest: m[4]! });
  }
  return rows;
}

describe('docs/protocol.md opcode table', () => {
  const rows = opcodeRows(PROTOCOL_MD);

  it('has a row for every opcode of client/protocol/opcodes.ts (by name, or inside a documented range)', () => {
    const missing = Object.entries(Opcode).filter(
      ([name, value]) => !rows.some((r) => (r.from === value && r.to === value && r.name === name) || (r.from < r.to && r.from <= value && value <= r.to)),
    );
    expect(missing).toEqual([]);
  });

  it('names no opcode the code does not have', () => {
    const byValue = new Map<number, string>(Object.entries(Opcode).map(([name, value]) => [value, name]));
    const stale = rows.filter((r) => r.from === r.to && byValue.get(r.from) !== r.name);
    expect(stale).toEqual([]);
  });

  it('is found at all (a broken parser must not pass by seeing nothing)', () => {
    expect(rows.find((r) => r.name === 'Produce')).toMatchObject({ from: 0x20, to: 0x20, name: 'Produce' });
    expect(rows.length).toBeGreaterThan(10);
  });
});

describe('docs/protocol.md Hello examples', () => {
  const dir = tempDir('sluice-docs-');
  let broker: Broker;

  beforeAll(async () => {
    broker = await Broker.open({ dataDir: dir.path, logger: new MemoryLogger() });
  });

  afterAll(async () => {
    await broker?.close();
    dir.remove();
  });

  it('gives every opcode the broker serves, and the Deliver push, a row of its own that does not call it unserved', () => {
    const rows = opcodeRows(PROTOCOL_MD);
    const served = Object.entries(Opcode).filter(([name, value]) => broker.serves(value) || name === 'Deliver');
    expect(served.map(([name]) => name)).toContain('Settle');
    const lacking = served.filter(([name, value]) => !rows.some((r) => r.from === value && r.to === value && r.name === name && !/not served/i.test(r.rest)));
    expect(lacking).toEqual([]);
    const rangesOverServed = rows.filter((r) => r.from < r.to && served.some(([, value]) => r.from <= value && value <= r.to));
    expect(rangesOverServed).toEqual([]);
  });

  it('shows, byte for byte, the Settle body the SDK sends to ack one delivery', () => {
    const body = { consumerId: 'c1-1', items: [[0, 42, 1, 0] as const] };
    const documented = hexBlockAfter(PROTOCOL_MD, 'hot path: an item of small numbers is 5 bytes.');
    expect(documented.toString('hex')).toBe(encodeBody(body).toString('hex'));
    expect(parseSettleRequest(decodeBody(documented))).toEqual({ ...body, receipt: false });
    expect(PROTOCOL_MD).toContain(`for consumer \`c1-1\` (${documented.length} bytes)`);
  });

  it('shows the Hello request the SDK sends for clientId "demo"', () => {
    const expected = encodeFrame({ opcode: Opcode.Hello, correlationId: 1 }, encodeBody({ version: 1, clientId: 'demo' }));
    expect(hexBlockAfter(PROTOCOL_MD, 'The frame the SDK sends').toString('hex')).toBe(expected.toString('hex'));
  });

  it("shows, byte for byte, a default broker's Hello reply", () => {
    const expected = encodeFrame({ opcode: Opcode.Hello, flags: FrameFlags.RESPONSE, correlationId: 1 }, encodeBody(broker.hello()));
    const documented = hexBlockAfter(PROTOCOL_MD, 'The same ');
    expect(documented.toString('hex')).toBe(expected.toString('hex'));
    expect(PROTOCOL_MD).toContain(`The broker's answer with default settings (${expected.length} bytes`);
  });
});
