import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { ContainerStore } from '../../pkg/sandbox/container_store.js';
import { SandboxStore } from '../../pkg/sandbox/sandbox_store.js';
import { fsyncTree, isTempName, syncFileSystem, tempNameFor, writeFileDurable } from '../../pkg/store/durable_file.js';
import { JsonRecords, movedAsideRecords } from '../../pkg/store/json_records.js';
import { tempFolders } from '../lib/unit.js';

// What an operator notices after a crash, a power cut or a hand edit: a record
// that will not parse is kept in <dir>/corrupt/ and named in the log and
// `crictl info`, never silently deleted (it may be the only pointer to a
// pod's netns, IP lease and rootfs); concurrent writers of one record never
// trip over one another's temp file; leftovers of a crash are cleaned.

const dirs = tempFolders('usernode-durable-records-');

interface Rec {
  id: string;
  n: number;
}

describe('JsonRecords', () => {
  test('a record that does not parse is moved into corrupt/ and reported, never deleted; the others load', async () => {
    const dir = await dirs.fresh('corrupt');
    const store = new JsonRecords<Rec>(dir, (r) => r.id);
    await store.loadAll();
    await store.write({ id: 'good', n: 1 });
    await writeFile(join(dir, 'torn.json'), '{"id": "torn", "n"');
    await writeFile(join(dir, 'null.json'), 'null');
    await writeFile(join(dir, 'renamed.json'), '{"id": "other", "n": 3}');
    const before = movedAsideRecords.length;

    const loaded = await new JsonRecords<Rec>(dir, (r) => r.id).loadAll();

    assert.deepEqual(loaded, [{ id: 'good', n: 1 }]);
    const kept = await readdir(join(dir, 'corrupt'));
    assert.equal(kept.length, 3, `corrupt/ holds ${kept.join(', ')}`);
    for (const n of ['torn.json', 'null.json', 'renamed.json']) {
      assert.equal(existsSync(join(dir, n)), false, `${n} is no longer among the records`);
      const moved = kept.find((k) => k.startsWith(`${n}.`));
      assert.ok(moved, `${n} is kept in corrupt/ with a timestamp`);
    }
    assert.equal(await readFile(join(dir, 'corrupt', kept.find((k) => k.startsWith('torn.json.'))!), 'utf8'), '{"id": "torn", "n"', 'the bytes are kept as they were');
    const reported = movedAsideRecords.slice(before);
    assert.deepEqual(reported.map((r) => r.file).sort(), ['null.json', 'renamed.json', 'torn.json'].map((n) => join(dir, n)).sort());
    for (const r of reported) assert.ok(r.error.length > 0 && existsSync(r.movedTo), `report names the error and where the file is: ${JSON.stringify(r)}`);
  });

  test('leftover temp files of a crash are removed at load; the record stays', async () => {
    const dir = await dirs.fresh('tmp');
    const store = new JsonRecords<Rec>(dir, (r) => r.id);
    await store.loadAll();
    await store.write({ id: 'a', n: 1 });
    await writeFile(tempNameFor(join(dir, 'a.json')), '{"id":"a","n":');
    await writeFile(join(dir, 'a.json.tmp'), '{}');
    assert.deepEqual(await new JsonRecords<Rec>(dir, (r) => r.id).loadAll(), [{ id: 'a', n: 1 }]);
    assert.deepEqual(await readdir(dir), ['a.json']);
  });

  test('50 concurrent writes of one record all succeed; the record is one of them, whole; no temp file stays', async () => {
    const dir = await dirs.fresh('race');
    const store = new JsonRecords<Rec>(dir, (r) => r.id);
    await store.loadAll();
    const results = await Promise.allSettled(Array.from({ length: 50 }, (_, n) => store.write({ id: 'x', n })));
    assert.deepEqual(results.filter((r) => r.status === 'rejected'), []);
    const onDisk = JSON.parse(await readFile(join(dir, 'x.json'), 'utf8')) as Rec;
    assert.equal(onDisk.id, 'x');
    assert.ok(onDisk.n >= 0 && onDisk.n < 50);
    assert.deepEqual(await readdir(dir), ['x.json']);
  });

  test('temp names are unique per writer and recognised as leftovers', () => {
    const a = tempNameFor('/d/r.json');
    const b = tempNameFor('/d/r.json');
    assert.notEqual(a, b);
    assert.ok(a.startsWith('/d/') && a.includes(String(process.pid)));
    assert.ok(isTempName(a.slice(3)) && !isTempName('r.json'));
  });

  test('writeFileDurable replaces the file whole and leaves no temp file when the folder is gone', async () => {
    const dir = await dirs.fresh('wfd');
    await writeFileDurable(join(dir, 'f'), 'one');
    await writeFileDurable(join(dir, 'f'), 'two');
    assert.equal(await readFile(join(dir, 'f'), 'utf8'), 'two');
    assert.deepEqual(await readdir(dir), ['f']);
    await assert.rejects(writeFileDurable(join(dir, 'missing', 'f'), 'x'), /ENOENT/);
  });

  test('a tree is synced both ways (syncfs through sync -f, and fsync of each file)', async () => {
    const dir = await dirs.fresh('tree');
    await writeFile(join(dir, 'a'), 'a');
    await syncFileSystem(dir);
    await fsyncTree(dir);
    await assert.rejects(syncFileSystem(join(dir, 'nope')), /sync -f/);
  });

  test('fsyncTree skips what it may not open (a mode-000 file or folder) and never follows a link', async () => {
    const dir = await dirs.fresh('closed');
    await mkdir(join(dir, 'shut'));
    await writeFile(join(dir, 'shut', 'x'), 'x');
    await writeFile(join(dir, 'secret'), 's');
    await symlink('/nonexistent/target', join(dir, 'dangling'));
    await chmod(join(dir, 'secret'), 0o000);
    await chmod(join(dir, 'shut'), 0o000);
    try {
      await fsyncTree(dir);
    } finally {
      await chmod(join(dir, 'shut'), 0o700);
    }
  });
});

function sandbox(id: string, name = 'web'): Parameters<SandboxStore['add']>[0] {
  return {
    id,
    metadata: { name, uid: 'u1', namespace: 'default', attempt: 0 },
    state: 'SANDBOX_READY',
    createdAt: '1',
    labels: {},
    annotations: {},
    runtimeHandler: '',
    hostname: name,
    hostNetwork: false,
    namespaces: { net: `/ns/${id}/net`, uts: `/ns/${id}/uts` },
    network: { ip: '10.88.0.2', additionalIps: [], cniResult: {} },
    files: { dir: '/d', hostname: '/d/h', hosts: '/d/hosts', resolvConf: '/d/r' },
    logDirectory: '',
    portMappings: [],
    config: {},
  };
}

describe('SandboxStore: a record that will not parse after a restart', () => {
  test('is moved aside and the pods that parse are all there, their names still taken', async () => {
    const dir = await dirs.fresh('sandboxes');
    const s = new SandboxStore(dir);
    await s.init();
    await s.add(sandbox('a'.repeat(64), 'one'));
    await s.add(sandbox('b'.repeat(64), 'two'));
    const torn = join(dir, `${'c'.repeat(64)}.json`);
    await writeFile(torn, '{"id":"' + 'c'.repeat(64) + '","metadata":{');
    const again = new SandboxStore(dir);
    await again.init();
    assert.deepEqual(again.list().map((r) => r.metadata.name).sort(), ['one', 'two']);
    assert.equal(existsSync(torn), false);
    assert.equal((await readdir(join(dir, 'corrupt'))).length, 1, 'the torn record is kept in corrupt/');
    assert.throws(() => again.reserveName('default/one/u1/0', 'd'.repeat(64)), (e: unknown) => (e as { code?: string }).code === 'AlreadyExists');
  });
});

describe('ContainerStore after a restart', () => {
  test('names of loaded containers stay taken; a removed one frees its name', async () => {
    const dir = await dirs.fresh('containers');
    const s = new ContainerStore(dir);
    await s.init();
    const rec = { id: 'e'.repeat(64), sandboxId: 'p'.repeat(64), metadata: { name: 'app', attempt: 0 } } as Parameters<ContainerStore['add']>[0];
    await s.add(rec);
    const again = new ContainerStore(dir);
    await again.init();
    const key = `${'p'.repeat(64)}/app/0`;
    assert.throws(() => again.reserveName(key, 'f'.repeat(64)), (e: unknown) => (e as { code?: string }).code === 'AlreadyExists');
    await again.delete(rec.id);
    again.reserveName(key, 'f'.repeat(64));
  });
});
