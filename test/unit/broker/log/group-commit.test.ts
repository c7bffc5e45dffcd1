import { describe, expect, it } from 'vitest';
import { CommitQueue } from '../../../../broker/log/group-commit.js';

function item(log: string[], name: string) {
  return { name, resolve: () => log.push(`ok ${name}`), reject: (e: Error) => log.push(`fail ${name}: ${e.message}`) };
}

describe('CommitQueue', () => {
  it('commits everything pushed in one tick together, and what arrives meanwhile next', async () => {
    const commits: string[][] = [];
    const log: string[] = [];
    let release!: () => void;
    const queue = new CommitQueue<ReturnType<typeof item>>(async (items) => {
      commits.push(items.map((i) => i.name));
      if (commits.length === 1) await new Promise<void>((r) => (release = r));
    });
    queue.push(item(log, 'a'));
    queue.push(item(log, 'b'));
    await new Promise((r) => setImmediate(r));
    queue.push(item(log, 'c'));
    queue.push(item(log, 'd'));
    release();
    await queue.whenIdle();
    expect(commits).toEqual([['a', 'b'], ['c', 'd']]);
    expect(log).toEqual(['ok a', 'ok b', 'ok c', 'ok d']);
  });

  it('fails the failing commit, everything queued and everything later, and never commits again', async () => {
    const log: string[] = [];
    let calls = 0;
    const queue = new CommitQueue<ReturnType<typeof item>>(async () => {
      calls++;
      await new Promise((r) => setImmediate(r));
      throw new Error('disk on fire');
    });
    queue.push(item(log, 'a'));
    await new Promise((r) => setImmediate(r));
    queue.push(item(log, 'b'));
    await queue.whenIdle();
    queue.push(item(log, 'c'));
    expect(calls).toBe(1);
    expect(log).toEqual(['fail a: disk on fire', 'fail b: disk on fire', 'fail c: disk on fire']);
  });
});
