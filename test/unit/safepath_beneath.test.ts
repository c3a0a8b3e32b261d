import assert from 'node:assert/strict';
import { mkdir, readFile, rename, stat, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { DomainError } from '../../pkg/errdefs/errors.js';
import { openBeneath, pathOf } from '../../pkg/safepath/beneath.js';
import { encodeMountRoots, mountRootsAnnotation, parseMountRoots } from '../../pkg/safepath/mount_roots.js';
import { rejection, tempFolders } from '../lib/unit.js';

// The walker that opens a volume's subPath (or a CRI host path) without a
// symlink leading it out: symlinks inside the volume are followed and stay
// inside, `..` and links out of it are refused naming the field, a dangling
// link is NotFound; below "/" it resolves as the kernel does.

const temp = tempFolders('beneath-');

async function volume(): Promise<{ outside: string; vol: string }> {
  const top = await temp.fresh('t');
  const outside = join(top, 'outside');
  const vol = join(top, 'vol');
  await mkdir(outside);
  await writeFile(join(outside, 'secret'), 'node file\n');
  await mkdir(join(vol, 'a', 'b'), { recursive: true });
  await writeFile(join(vol, 'a', 'b', 'f'), 'in the volume\n');
  return { outside, vol };
}

const opened = async (root: string, rel: string): Promise<string> => {
  const fh = await openBeneath(root, rel, { field: 'm' });
  try {
    return await pathOf(fh);
  } finally {
    await fh.close();
  }
};

const refusal = async (root: string, rel: string, code: string, want: RegExp, rootIdentity?: string): Promise<void> => {
  const e = await rejection(openBeneath(root, rel, { field: 'spec.containers[0].volumeMounts[1].subPath', ...(rootIdentity ? { rootIdentity } : {}) }));
  assert.ok(e instanceof DomainError, String(e));
  assert.equal(e.code, code, e.message);
  assert.equal(e.field, 'spec.containers[0].volumeMounts[1].subPath');
  assert.match(e.message, want);
};

describe('openBeneath', () => {
  test('plain folders and files; the root itself; `.` and doubled slashes', async () => {
    const { vol } = await volume();
    assert.equal(await opened(vol, 'a/b/f'), join(vol, 'a', 'b', 'f'));
    assert.equal(await opened(vol, './a//b/'), join(vol, 'a', 'b'));
    assert.equal(await opened(vol, ''), vol);
    assert.equal(await opened(join(vol, 'a', 'b', 'f'), ''), join(vol, 'a', 'b', 'f'), 'a file root with nothing below it');
  });

  test('a symlink in the middle that stays inside is followed, relative or absolute', async () => {
    const { vol } = await volume();
    await symlink('a/b', join(vol, 'rel'));
    await symlink(join(vol, 'a'), join(vol, 'abs'));
    await symlink('../b', join(vol, 'a', 'b', 'up'));
    assert.equal(await opened(vol, 'rel/f'), join(vol, 'a', 'b', 'f'));
    assert.equal(await opened(vol, 'abs/b/f'), join(vol, 'a', 'b', 'f'));
    assert.equal(await opened(vol, 'a/b/up/f'), join(vol, 'a', 'b', 'f'));
    assert.equal(await opened(vol, 'a/../a/b'), join(vol, 'a', 'b'), '`..` that stays inside');
  });

  test('a symlink out of the volume is refused, in the middle or at the end, absolute or by `..`', async () => {
    const { vol, outside } = await volume();
    await symlink('/', join(vol, 'root'));
    await symlink(outside, join(vol, 'out'));
    await symlink('../outside', join(vol, 'a', 'b', 'rel-out'));
    await symlink('../../..', join(vol, 'a', 'up3'));
    await refusal(vol, 'root', 'PermissionDenied', /root is a symlink to \/, outside/);
    await refusal(vol, 'root/etc', 'PermissionDenied', /outside/);
    await refusal(vol, 'out/secret', 'PermissionDenied', /outside/);
    await refusal(vol, 'a/up3/outside', 'PermissionDenied', /leads out of/);
    await refusal(vol, '..', 'PermissionDenied', /leads out of/);
    await refusal(vol, 'a/../../outside', 'PermissionDenied', /leads out of/);
  });

  test('a dangling symlink is NotFound; a file in the middle is not a folder; a loop ends', async () => {
    const { vol } = await volume();
    await symlink('nowhere', join(vol, 'dangling'));
    await symlink('loop2', join(vol, 'loop1'));
    await symlink('loop1', join(vol, 'loop2'));
    await refusal(vol, 'dangling', 'NotFound', /nowhere does not exist/);
    await refusal(vol, 'a/b/f/g', 'FailedPrecondition', /is not a folder/);
    await refusal(vol, 'loop1', 'FailedPrecondition', /too many levels of symbolic links/);
  });

  test('below "/" it resolves as the kernel does: absolute links and `..` at the top stay at the top', async () => {
    const { vol, outside } = await volume();
    await symlink(outside, join(vol, 'out'));
    assert.equal(await opened('/', join(vol, 'out', 'secret')), join(outside, 'secret'));
    assert.equal(await opened('/', `../..${vol}/a`), join(vol, 'a'));
  });

  test('makeDirs makes the missing folders, and never through a symlink out of the volume', async () => {
    const { vol, outside } = await volume();
    const fh = await openBeneath(vol, 'new/deeper', { field: 'f', makeDirs: 0o750 });
    await fh.close();
    assert.ok((await stat(join(vol, 'new', 'deeper'))).isDirectory());
    assert.equal((await stat(join(vol, 'new', 'deeper'))).mode & 0o777, 0o750 & ~process.umask());
    await symlink(outside, join(vol, 'out'));
    await refusal(vol, 'out/made', 'PermissionDenied', /outside/);
    await assert.rejects(stat(join(outside, 'made')), /ENOENT/, 'nothing was made outside the volume');
    assert.equal(await readFile(join(outside, 'secret'), 'utf8'), 'node file\n');
  });
});

describe('openBeneath with the root identity the node half checked', () => {
  test('the same folder opens; one swapped for a symlink elsewhere since is refused', async () => {
    const { vol, outside } = await volume();
    const st = await stat(vol, { bigint: true });
    const id = `${st.dev}:${st.ino}`;
    const fh = await openBeneath(vol, 'a', { field: 'f', rootIdentity: id });
    await fh.close();
    await rename(vol, `${vol}.moved`);
    await mkdir(join(outside, 'a'));
    await symlink(outside, vol);
    await refusal(vol, 'a', 'FailedPrecondition', /no longer the file that was checked/, id);
  });
});

describe('the mount-roots annotation', () => {
  test('round trip; a malformed one is InvalidArgument naming the annotation', () => {
    const roots = new Map([['/data', { root: '/vol/a', identity: '2049:1234' }]]);
    assert.deepEqual(parseMountRoots(encodeMountRoots(roots)), roots);
    assert.deepEqual(parseMountRoots(undefined), new Map());
    for (const bad of ['{', '[]', '{"/d":{"root":"rel"}}', '{"/d":{"root":"/a","identity":"x"}}']) {
      assert.throws(() => parseMountRoots(bad), (e: unknown) => e instanceof DomainError && e.code === 'InvalidArgument' && e.field === `config.annotations["${mountRootsAnnotation}"]`, bad);
    }
  });
});
