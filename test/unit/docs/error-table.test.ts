import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ERROR_TABLE } from '../../../client/protocol/errors.js';

/**
 * docs/protocol.md's "## Error codes" table must list exactly the entries of ERROR_TABLE, one row
 * each, as `| code | NAME | yes/no | message |`, so the docs cannot drift from the code.
 */
const PROTOCOL_MD = fileURLToPath(new URL('../../../docs/protocol.md', import.meta.url));

interface Row {
  readonly code: number;
  readonly name: string;
  readonly retriable: boolean;
  readonly message: string;
}

/** The table rows under `heading`, up to the next heading; throws when the table is malformed. */
function parseErrorTable(markdown: string, heading = '## Error codes'): Row[] {
  const lines = markdown.split(/\r?\n/);
  const start = lines.findIndex((l) => l.trim() === heading);
  if (start === -1) throw new Error(`no "${heading}" heading`);
  const section: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (/^#{1,6}\s/.test(line)) break;
    section.push(line);
  }
  // The first contiguous run of `|` lines is the table: header, separator, then rows.
  const first = section.findIndex((l) => l.trim().startsWith('|'));
  if (first === -1) throw new Error(`no table under "${heading}"`);
  const table: string[] = [];
  for (const line of section.slice(first)) {
    if (!line.trim().startsWith('|')) break;
    table.push(line.trim());
  }
  const [header, separator, ...body] = table;
  if (header === undefined || separator === undefined || !/^\|[\s:|-]+\|$/.test(separator)) {
    throw new Error(`the table under "${heading}" has no header and separator row`);
  }
  return body.map((line) => {
    const cells = line.replace(/^\||\|$/g, '').split('|').map((c) => c.trim().replace(/^`(.*)`$/, '$1'));
    if (cells.length !== 4) throw new Error(`row must have 4 cells (code, name, retriable, message): ${line}`);
    const [code, name, retriable, message] = cells as [string, string, string, string];
    if (!/^\d+$/.test(code)) throw new Error(`code must be a number: ${line}`);
    if (retriable !== 'yes' && retriable !== 'no') throw new Error(`retriable must be yes or no: ${line}`);
    return { code: Number(code), name, retriable: retriable === 'yes', message };
  });
}

describe('docs/protocol.md error table', () => {
  const rows = parseErrorTable(readFileSync(PROTOCOL_MD, 'utf8'));
  const expected: Row[] = Object.entries(ERROR_TABLE).map(([name, e]) => ({
    code: e.code,
    name,
    retriable: e.retriable,
    message: e.message,
  }));
  const byCode = (a: Row, b: Row): number => a.code - b.code;

  it('has one row per ERROR_TABLE entry, with its code, name, retriable flag and message', () => {
    expect([...rows].sort(byCode)).toEqual([...expected].sort(byCode));
  });

  it('lists no code or name twice', () => {
    expect(new Set(rows.map((r) => r.code)).size).toBe(rows.length);
    expect(new Set(rows.map((r) => r.name)).size).toBe(rows.length);
  });

  it('parses the format it documents, and notices a drifted row', () => {
    const doc = ['## Error codes', '', '| Code | Name | Retriable | Message |', '|---:|---|---|---|', '| 1 | UNKNOWN | no | Oops |', '', '## Next', '| 9 | X | yes | y |'].join('\n');
    expect(parseErrorTable(doc)).toEqual([{ code: 1, name: 'UNKNOWN', retriable: false, message: 'Oops' }]);
    expect(() => parseErrorTable(doc.replace('| no |', '| maybe |'))).toThrow(/yes or no/);
    expect(() => parseErrorTable('# Nothing here')).toThrow(/no "## Error codes" heading/);
  });
});
