import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import ts from 'typescript';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DIST = join(ROOT, 'dist');
const OUT = join(ROOT, 'test-results', 'scripts');

/**
 * Makes a TypeScript script of the repository (a test helper that runs as its own process, or a
 * docs example) runnable by plain `node`: transpiled (no type check) into test-results/scripts/,
 * with its relative imports pointed at the built code (`../../client/index.js` of
 * test/helpers/x.ts becomes dist/client/index.js), while package imports (`sluice`,
 * `sluice/broker`, `better-sqlite3`) resolve as they do for the package itself. Nothing is
 * written into dist/, which is what gets published. Needs the build (`npm run build`; `npm test`
 * runs it first). Returns the path of the .js file.
 */
export function compileScript(repoPath: string): string {
  if (!existsSync(join(DIST, 'client', 'index.js'))) throw new Error('dist/ is missing: run `npm run build` first (npm test does)');
  const source = join(ROOT, repoPath);
  const out = join(OUT, repoPath.replace(/\.ts$/, '.js'));
  const { outputText } = ts.transpileModule(readFileSync(source, 'utf8'), {
    fileName: source,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, sourceMap: false, verbatimModuleSyntax: true },
  });
  const built = dirname(join(DIST, repoPath));
  const code = outputText.replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)(['"])(\.\.?\/[^'"]+)\2/g, (_, lead: string, quote: string, spec: string) => `${lead}${quote}${pathToFileURL(join(built, spec)).href}${quote}`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, code);
  return out;
}

export interface ScriptRun {
  readonly child: ChildProcess;
  stdout: string;
  stderr: string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `node script` with extra environment; collects its output. */
export function runScript(script: string, env: Record<string, string> = {}): ScriptRun {
  const child = spawn(process.execPath, [script], { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const run: ScriptRun = {
    child,
    stdout: '',
    stderr: '',
    exited: new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal }))),
  };
  child.stdout?.on('data', (d: Buffer) => (run.stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (run.stderr += d.toString()));
  return run;
}
