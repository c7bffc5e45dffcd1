import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * The import rules of docs/architecture.md ("Import rules"), checked over the source: every
 * import/export-from/dynamic import/require specifier of every .ts file under client/ and broker/,
 * relative ones resolved to repository paths.
 */
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

/** Replaces comments with spaces, keeping strings, so commented-out imports do not count. */
function stripComments(source: string): string {
  let out = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === '/' && next === '/') {
      while (i < source.length && source[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end === -1 ? source.length : end + 2;
      out += source.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else if (c === "'" || c === '"' || c === '`') {
      let j = i + 1;
      while (j < source.length && source[j] !== c) j += source[j] === '\\' ? 2 : 1;
      out += source.slice(i, j + 1);
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

const PATTERNS = [
  // import x from 'm'; import { a, type b } from 'm'; export * from 'm'; export type { T } from 'm'
  /(?:^|[;\n}])\s*(?:import|export)\s+(?:type\s+)?[^;'"`]*?\bfrom\s*(['"])([^'"]+)\1/g,
  // import 'm' (side effects only)
  /(?:^|[;\n}])\s*import\s*(['"])([^'"]+)\1/g,
  // import('m'), require('m'), createRequire(import.meta.url)('m')
  /\b(?:import|require)\s*\(\s*(['"])([^'"]+)\1\s*\)/g,
  /\bcreateRequire\s*\([^)]*\)\s*\(\s*(['"])([^'"]+)\1\s*\)/g,
];

/** Module specifiers a source file imports, in order of appearance per pattern. */
function specifiersOf(source: string): string[] {
  const code = stripComments(source);
  const found: string[] = [];
  for (const pattern of PATTERNS) {
    for (const m of code.matchAll(pattern)) found.push(m[2]!);
  }
  return found;
}

interface Import {
  readonly file: string; // repository path, posix
  readonly specifier: string;
  /** Repository path the import resolves to, for relative specifiers; undefined for packages. */
  readonly target: string | undefined;
}

function importsOf(file: string, source: string): Import[] {
  return specifiersOf(source).map((specifier) => ({
    file,
    specifier,
    target: specifier.startsWith('.') ? path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier)) : undefined,
  }));
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
    const rel = path.posix.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...tsFiles(rel));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(rel);
  }
  return out.sort();
}

function under(p: string | undefined, ...dirs: string[]): boolean {
  return p !== undefined && dirs.some((d) => (d.endsWith('/') ? p.startsWith(d) : p === d || p.startsWith(`${d}.`)));
}

const PROTOCOL_PACKAGES = new Set(['msgpackr', 'node:buffer', 'node:module', '@node-rs/crc32']);
const ABOVE_STORAGE = ['broker/net/', 'broker/handlers/', 'broker/groups/', 'broker/push/', 'broker/txn/', 'broker/broker', 'broker/index'];
const ABOVE_GROUPS = ['broker/net/', 'broker/handlers/', 'broker/push/', 'broker/txn/', 'broker/broker', 'broker/index'];
const ABOVE_PUSH = ['broker/handlers/', 'broker/groups/', 'broker/broker', 'broker/index'];
const ABOVE_TXN = ['broker/net/', 'broker/handlers/', 'broker/groups/', 'broker/push/', 'broker/topics', 'broker/broker', 'broker/index'];

/** Every broken rule, as `file: import 'specifier' (why)`. */
function violations(imports: readonly Import[]): string[] {
  const out: string[] = [];
  for (const i of imports) {
    const broke = (why: string): void => {
      out.push(`${i.file}: import '${i.specifier}' (${why})`);
    };
    const { file, target } = i;
    if (target !== undefined && (target.startsWith('../') || target === '..')) broke('resolves outside the repository');
    if (under(file, 'client/protocol/')) {
      if (target === undefined ? !PROTOCOL_PACKAGES.has(i.specifier) : !under(target, 'client/protocol/')) {
        broke('rule 1: client/protocol imports only itself, msgpackr, node:buffer, node:module and @node-rs/crc32');
      }
    }
    if (under(file, 'broker/') && under(target, 'client/') && !under(target, 'client/protocol/')) {
      broke('rule 2: broker imports nothing of client/ but client/protocol');
    }
    if (under(file, 'broker/log/') && under(target, ...ABOVE_STORAGE, 'broker/meta/')) {
      broke('rule 3: broker/log imports no net, handlers, groups, push, txn, meta or broker core');
    }
    if (under(file, 'broker/meta/') && under(target, ...ABOVE_STORAGE, 'broker/log/')) {
      broke('rule 3: broker/meta imports no net, handlers, groups, push, txn, log or broker core');
    }
    if (under(file, 'broker/groups/') && under(target, ...ABOVE_GROUPS)) {
      broke('rule 4: broker/groups imports no net, handlers, push, txn or broker core');
    }
    if (under(file, 'broker/push/') && under(target, ...ABOVE_PUSH)) {
      broke('rule 6: broker/push imports no handlers, groups or broker core');
    }
    if (under(file, 'broker/txn/') && under(target, ...ABOVE_TXN)) {
      broke('rule 7: broker/txn imports no net, handlers, groups, push, topic registry or broker core');
    }
    if (under(file, 'client/') && under(target, 'broker/')) broke('rule 5: client imports nothing of broker/');
    if (under(target, 'cli/') && !under(file, 'cli/')) broke('rule 5: only cli/ itself may import cli/');
    if (under(target, 'testing/') && !under(file, 'testing/')) broke('rule 8: nothing but testing/ imports testing/ (the product never depends on its test kit)');
  }
  return out;
}

describe('import rules (docs/architecture.md)', () => {
  const files = [...tsFiles('client'), ...tsFiles('broker'), ...tsFiles('cli'), ...tsFiles('testing')];
  const imports = files.flatMap((f) => importsOf(f, readFileSync(path.join(ROOT, f), 'utf8')));

  it('scans the source it is meant to (a broken scanner must not pass by seeing nothing)', () => {
    const seen = (file: string, specifier: string): boolean => imports.some((i) => i.file === file && i.specifier === specifier);
    expect(files).toContain('client/protocol/frame.ts');
    expect(files.some((f) => f.startsWith('broker/log/'))).toBe(true);
    expect(files.some((f) => f.startsWith('broker/meta/'))).toBe(true);
    expect(files.some((f) => f.startsWith('broker/groups/'))).toBe(true);
    expect(files.some((f) => f.startsWith('broker/push/'))).toBe(true);
    expect(files.some((f) => f.startsWith('broker/txn/'))).toBe(true);
    expect(seen('broker/txn/coordinator.ts', '../meta/transaction-store.js')).toBe(true);
    expect(seen('client/protocol/body.ts', 'msgpackr')).toBe(true);
    expect(seen('client/protocol/crc32c.ts', '@node-rs/crc32')).toBe(true);
    expect(imports.some((i) => i.file.startsWith('broker/') && i.target === 'client/protocol/errors.js')).toBe(true);
  });

  it('holds for every file under client/, broker/, cli/ and testing/', () => {
    expect(violations(imports)).toEqual([]);
  });

  describe('the checker', () => {
    const check = (file: string, source: string): string[] => violations(importsOf(file, source));

    it('finds every form of import, across lines, and skips comments', () => {
      const source = [
        "import fs from 'node:fs';",
        'import {',
        '  a,',
        '  type B,',
        "} from './a.js';",
        "import type { C } from '../c.js';",
        "export * from './d.js';",
        "export type { E } from './e.js';",
        "import './side-effect.js';",
        "const lazy = await import('./lazy.js');",
        "const req = createRequire(import.meta.url)('native-mod');",
        "// import x from 'commented-out';",
        "/* import y from 'also-commented'; */",
        "const s = 'this is not an import from \"nowhere\"';",
      ].join('\n');
      expect(specifiersOf(source)).toEqual(['node:fs', './a.js', '../c.js', './d.js', './e.js', './side-effect.js', './lazy.js', 'native-mod']);
    });

    it('flags each rule', () => {
      expect(check('client/protocol/frame.ts', "import { connect } from 'node:net';")).toHaveLength(1);
      expect(check('client/protocol/frame.ts', "import { x } from '../connection.js';")).toHaveLength(1);
      expect(check('client/protocol/messages/x.ts', "import { fields } from '../shape.js';")).toEqual([]);
      expect(check('broker/net/x.ts', "import { deferred } from '../../client/internal/deferred.js';")).toHaveLength(1);
      expect(check('broker/log/x.ts', "import type { RequestContext } from '../net/server-connection.js';")).toHaveLength(1);
      expect(check('broker/log/x.ts', "import { Broker } from '../broker.js';")).toHaveLength(1);
      expect(check('broker/meta/x.ts', "import { PartitionLog } from '../log/index.js';")).toHaveLength(1);
      expect(check('broker/meta/x.ts', "import { handlePing } from '../handlers/ping.js';")).toHaveLength(1);
      expect(check('broker/groups/x.ts', "import { Broker } from '../broker.js';")).toHaveLength(1);
      expect(check('broker/groups/x.ts', "import type { MetaStore } from '../meta/meta-store.js';")).toEqual([]);
      expect(check('broker/log/x.ts', "import { SluiceError } from '../../client/protocol/errors.js';")).toEqual([]);
      expect(check('client/connection.ts', "import { Broker } from '../broker/broker.js';")).toHaveLength(1);
      expect(check('broker/x.ts', "import { main } from '../cli/main.js';")).toHaveLength(1);
      expect(check('broker/x.ts', "import { History } from '../testing/history.js';")).toHaveLength(1);
      expect(check('cli/x.ts', "import { checkHistory } from '../testing/checker.js';")).toHaveLength(1);
      expect(check('testing/x.ts', "import { Broker } from '../broker/broker.js';")).toEqual([]);
      expect(check('broker/meta/x.ts', "import type { PersistedPartitionState } from '../push/partition-state.js';")).toHaveLength(1);
      expect(check('broker/groups/x.ts', "import { PushService } from '../push/push-service.js';")).toHaveLength(1);
      expect(check('broker/push/x.ts', "import { Broker } from '../broker.js';")).toHaveLength(1);
      expect(check('broker/push/x.ts', "import type { Services } from '../handlers/services.js';")).toHaveLength(1);
      expect(check('broker/push/x.ts', "import type { PartitionLog } from '../log/index.js';")).toEqual([]);
      expect(check('broker/push/x.ts', "import type { Session } from '../net/server-connection.js';")).toEqual([]);
      expect(check('broker/push/x.ts', "import { forEachVisibleBatch } from '../txn/visibility.js';")).toEqual([]);
      expect(check('broker/log/x.ts', "import type { ProducerStateTable } from '../txn/producer-state.js';")).toHaveLength(1);
      expect(check('broker/meta/x.ts', "import type { TxnState } from '../txn/coordinator.js';")).toHaveLength(1);
      expect(check('broker/groups/x.ts', "import type { TransactionCoordinator } from '../txn/coordinator.js';")).toHaveLength(1);
      expect(check('broker/txn/x.ts', "import type { PushService } from '../push/push-service.js';")).toHaveLength(1);
      expect(check('broker/txn/x.ts', "import type { GroupCoordinator } from '../groups/coordinator.js';")).toHaveLength(1);
      expect(check('broker/txn/x.ts', "import type { TopicRegistry } from '../topics.js';")).toHaveLength(1);
      expect(check('broker/txn/x.ts', "import type { Services } from '../handlers/services.js';")).toHaveLength(1);
      expect(check('broker/txn/x.ts', "import type { PartitionLog } from '../log/index.js';")).toEqual([]);
      expect(check('broker/txn/x.ts', "import type { TransactionStore } from '../meta/transaction-store.js';")).toEqual([]);
    });
  });
});
