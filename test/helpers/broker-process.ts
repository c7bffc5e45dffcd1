import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface BrokerProcessOptions {
  dataDir: string;
  /** 0 picks a free port on first start; restarts reuse the port it got. */
  port?: number;
  args?: readonly string[];
  /**
   * A script to run instead of the CLI (test/helpers/power-cut-broker.ts, compiled by
   * child-script.ts); it gets the same arguments and must print the same listening line.
   */
  script?: string;
}

/**
 * The broker as a child process running the built CLI, so tests can SIGKILL, SIGSTOP and
 * restart it on the same data dir and port, as an operator (or a crash) would.
 */
export class BrokerProcess {
  readonly dataDir: string;
  readonly #args: readonly string[];
  readonly #script: string;
  #port: number;
  #child: ChildProcess | undefined;
  #exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | undefined;
  stderr = '';

  private constructor(options: BrokerProcessOptions) {
    this.dataDir = options.dataDir;
    this.#port = options.port ?? 0;
    this.#args = options.args ?? [];
    this.#script = options.script ?? CLI;
  }

  static async start(options: BrokerProcessOptions): Promise<BrokerProcess> {
    if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` first (npm test does)`);
    const bp = new BrokerProcess(options);
    await bp.restart();
    return bp;
  }

  get port(): number {
    return this.#port;
  }

  get address(): string {
    return `127.0.0.1:${this.#port}`;
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Starts the broker (again) and resolves once it prints its listening line. */
  async restart(): Promise<void> {
    const child = spawn(process.execPath, [this.#script, 'broker', '--port', String(this.#port), '--data', this.dataDir, '--log-level', 'warn', ...this.#args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#child = child;
    this.#exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      const onData = (d: Buffer): void => {
        out += d.toString();
        const m = /sluice listening on (\S+)/.exec(out);
        if (m !== null) {
          child.stdout?.off('data', onData);
          resolve(m[1] as string);
        }
      };
      child.stdout?.on('data', onData);
      child.once('exit', (code) => reject(new Error(`broker exited with ${code} before listening: ${this.stderr}`)));
    });
    this.#port = Number(line.slice(line.lastIndexOf(':') + 1));
  }

  /** Sends a signal and waits for the process to exit. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const child = this.#child;
    if (child === undefined || this.#exit === undefined) throw new Error('broker not running');
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return this.#exit;
  }

  kill(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    return this.stop('SIGKILL');
  }

  /**
   * A power cut (the broker must run test/helpers/power-cut-broker.ts): what was not fsynced is
   * lost, then the process dies with SIGKILL.
   */
  powerCut(): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.#script === CLI) throw new Error('powerCut() needs a broker started from test/helpers/power-cut-broker.ts (option `script`)');
    return this.stop('SIGUSR2');
  }

  pause(): void {
    this.#child?.kill('SIGSTOP');
  }

  resume(): void {
    this.#child?.kill('SIGCONT');
  }
}
