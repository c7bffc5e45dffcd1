import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { compileScript, runScript } from '../helpers/child-script.js';

/**
 * The runnable examples of docs/examples/: each type-checks against the built package (they
 * import `sluice` and `sluice/broker`, as a user's code does) and runs as a standalone program
 * with plain `node`, starting its own embedded broker and exiting 0 once its own check passed.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLES = readdirSync(join(ROOT, 'docs/examples')).filter((f) => f.endsWith('.ts')).sort();

describe('docs/examples', () => {
  it('has the examples the docs link to', () => {
    expect(EXAMPLES).toEqual(expect.arrayContaining(['idempotent-handler.ts', 'sqlite-effects.ts', 'transactional-copy.ts']));
  });

  it('type-check strictly against the built package', () => {
    const program = ts.createProgram(
      EXAMPLES.map((f) => join(ROOT, 'docs/examples', f)),
      {
        target: ts.ScriptTarget.ES2022,
        module: ts.ModuleKind.NodeNext,
        moduleResolution: ts.ModuleResolutionKind.NodeNext,
        lib: ['lib.es2023.d.ts'],
        types: ['node'],
        strict: true,
        noUncheckedIndexedAccess: true,
        noUnusedLocals: true,
        verbatimModuleSyntax: true,
        esModuleInterop: true,
        skipLibCheck: true,
        noEmit: true,
      },
    );
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n') + (d.file ? ` (${d.file.fileName})` : ''));
    expect(diagnostics).toEqual([]);
  }, 60_000);

  for (const example of EXAMPLES) {
    it(`${example} runs standalone and exits 0`, { timeout: 60_000 }, async () => {
      const run = runScript(compileScript(`docs/examples/${example}`));
      const exit = await run.exited;
      expect(exit, `${run.stdout}\n${run.stderr}`).toEqual({ code: 0, signal: null });
      expect(run.stdout).toMatch(/exactly once/);
    });
  }
});
