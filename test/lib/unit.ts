import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before } from 'node:test';

// Small helpers the unit tests share.

/** The error a rejected promise carries, or a failure when it resolves. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e: unknown) {
    return e;
  }
  assert.fail('it resolved');
}

/** A temp folder for this test file (made before, removed after); `fresh(name)` makes a new folder in it. */
export function tempFolders(prefix: string): { fresh(name: string): Promise<string>; root(): string } {
  let root = '';
  let seq = 0;
  before(async () => {
    root = await mkdtemp(join(tmpdir(), prefix));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  return {
    root: () => root,
    async fresh(name: string): Promise<string> {
      const d = join(root, `${name}-${++seq}`);
      await mkdir(d, { recursive: true });
      return d;
    },
  };
}
