import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createReadStream, existsSync } from 'node:fs';
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { gzipSync } from 'node:zlib';

import { pack } from 'tar-stream';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { type ApplyOptions, type ApplyResult, applyLayer, detectCompression, type UnpackTools } from '../../pkg/image/unpack/apply.js';

// Layers are built here with tar-stream's pack(), so every byte of a hostile
// layer is under the test's control. The hostile cases each get a fresh tree
// base/deep/er/target beside base/outside (a sentinel with a known file); after
// each, everything under base except target is compared with its state before.

const run = promisify(execFile);

type PackHeader = Parameters<ReturnType<typeof pack>['entry']>[0];
interface Member {
  header: PackHeader;
  content?: string | Buffer;
}

const T0 = new Date('2021-03-04T05:06:07Z');

async function tarOf(members: readonly Member[]): Promise<Buffer> {
  const p = pack();
  const out: Buffer[] = [];
  const reading = (async () => {
    for await (const c of p) out.push(Buffer.from(c as Uint8Array));
  })();
  for (const m of members) {
    await new Promise<void>((resolve, reject) => {
      const header = { mtime: T0, ...m.header };
      const done = (e?: Error | null): void => (e ? reject(e) : resolve());
      if (m.content !== undefined) p.entry(header, m.content, done);
      else p.entry(header, done);
    });
  }
  p.finalize();
  await reading;
  return Buffer.concat(out);
}

const file = (name: string, content: string, extra: Partial<PackHeader> = {}): Member => ({ header: { name, type: 'file', mode: 0o644, ...extra }, content });
const dir = (name: string, extra: Partial<PackHeader> = {}): Member => ({ header: { name, type: 'directory', mode: 0o755, ...extra } });
const sym = (name: string, linkname: string, extra: Partial<PackHeader> = {}): Member => ({ header: { name, type: 'symlink', linkname, ...extra } });
const hard = (name: string, linkname: string): Member => ({ header: { name, type: 'link', linkname } });

/** The tar's bytes in pieces of `size`, so headers and data straddle chunk boundaries. */
function chunked(buf: Buffer, size = 700): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) parts.push(buf.subarray(i, i + size));
  return Readable.from(parts);
}

/** Rewrites the type flag of the member named `name` (and its checksum): for types pack() will not write. */
function withTypeflag(tar: Buffer, name: string, flag: string): Buffer {
  const out = Buffer.from(tar);
  for (let off = 0; off + 512 <= out.length; ) {
    const h = out.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    if (h.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '') === name) {
      h[156] = flag.charCodeAt(0);
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
      return out;
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`no member ${name}`);
}

/**
 * A zstd frame (RFC 8878 §3.1.1) holding `content` uncompressed in Raw_Blocks:
 * magic, a Frame_Header_Descriptor with Single_Segment_flag and a 4-byte
 * Frame_Content_Size, then blocks of a 3-byte header (Last_Block, Block_Type 0,
 * Block_Size) and the bytes themselves. No checksum, no dictionary.
 */
function zstdRawFrame(content: Buffer, blockSize: number): Buffer {
  const fcs = Buffer.alloc(4);
  fcs.writeUInt32LE(content.length);
  const parts: Buffer[] = [Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.from([0b1010_0000]), fcs];
  for (let off = 0; off < content.length; off += blockSize) {
    const block = content.subarray(off, off + blockSize);
    const last = off + blockSize >= content.length ? 1 : 0;
    const h = (block.length << 3) | (0 << 1) | last;
    parts.push(Buffer.from([h & 0xff, (h >> 8) & 0xff, (h >> 16) & 0xff]), block);
  }
  return Buffer.concat(parts);
}

let base: string;
let n = 0;
const tools: UnpackTools = {
  ...(existsSync('/usr/bin/setfattr') ? { setfattr: '/usr/bin/setfattr' } : {}),
  ...(existsSync('/usr/bin/mkfifo') ? { mkfifo: '/usr/bin/mkfifo' } : {}),
};
/** Why overlay whiteouts cannot be checked here, or undefined when tools.mknod makes them. */
let noWhiteouts: string | undefined;
/** Why user xattrs cannot be checked here, or undefined when setfattr and getfattr work. */
let noXattrs: string | undefined;

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'usernode-unpack-'));
  noWhiteouts = await probeWhiteouts();
  noXattrs = await probeXattrs();
});

after(async () => {
  // Layers leave read-only directories (ro/ below), which an ordinary user cannot empty.
  await run('chmod', ['-R', 'u+w', base]);
  await rm(base, { recursive: true, force: true });
});

// Linux ≥ 5.8 lets anyone make the 0:0 whiteout device; where a kernel refuses
// it outside a user namespace, mknod runs inside one made for it (the layer
// code only sees a tool path, as it will in the node namespace).
async function probeWhiteouts(): Promise<string | undefined> {
  if (!existsSync('/usr/bin/mknod')) return 'no /usr/bin/mknod';
  const probe = join(base, 'probe-whiteout');
  const works = async (mknod: string): Promise<boolean> => {
    try {
      await run(mknod, [probe, 'c', '0', '0']);
      const st = await lstat(probe);
      return st.isCharacterDevice() && st.rdev === 0;
    } catch {
      return false;
    } finally {
      await rm(probe, { force: true });
    }
  };
  if (await works('/usr/bin/mknod')) {
    tools.mknod = '/usr/bin/mknod';
    return undefined;
  }
  const wrapper = join(base, 'mknod-in-userns');
  await writeFile(wrapper, '#!/bin/sh\nexec unshare --user --map-root-user /usr/bin/mknod "$@"\n', { mode: 0o755 });
  if (existsSync('/usr/bin/unshare') && (await works(wrapper))) {
    tools.mknod = wrapper;
    return undefined;
  }
  return 'this kernel refuses mknod c 0 0 to this user, even in a user namespace';
}

async function probeXattrs(): Promise<string | undefined> {
  if (tools.setfattr === undefined || !existsSync('/usr/bin/getfattr')) return 'setfattr or getfattr not installed';
  const probe = join(base, 'probe-xattr');
  try {
    await writeFile(probe, '');
    await run('/usr/bin/setfattr', ['-n', 'user.probe', '-v', 'y', probe]);
    return (await getXattr(probe, 'user.probe')) === 'y' ? undefined : 'getfattr does not read back user xattrs';
  } catch (e: unknown) {
    return `user xattrs unsupported on ${tmpdir()}: ${e instanceof Error ? e.message : String(e)}`;
  } finally {
    await rm(probe, { force: true });
  }
}

async function getXattr(path: string, name: string): Promise<string | undefined> {
  try {
    const { stdout } = await run('/usr/bin/getfattr', ['-h', '--only-values', '-n', name, path]);
    return stdout;
  } catch {
    return undefined;
  }
}

async function newTarget(): Promise<string> {
  const t = join(base, `t${++n}`);
  await mkdir(t);
  return t;
}

function options(extra: Partial<ApplyOptions> = {}): ApplyOptions {
  return { mode: 'merge', preserveOwnership: false, log: silentLogger, tools, ...extra };
}

async function apply(layer: Buffer, target: string, extra: Partial<ApplyOptions> = {}): Promise<ApplyResult> {
  return applyLayer(chunked(layer), target, options(extra));
}

const mtimeOf = async (p: string): Promise<number> => Math.round((await lstat(p)).mtimeMs / 1000);
const modeOf = async (p: string): Promise<number> => (await lstat(p)).mode & 0o7777;

describe('detectCompression', () => {
  test('tells gzip, zstd and plain tar apart by their magic bytes', () => {
    assert.equal(detectCompression(gzipSync(Buffer.from('x'))), 'gzip');
    assert.equal(detectCompression(Buffer.from([0x28, 0xb5, 0x2f, 0xfd, 0])), 'zstd');
    assert.equal(detectCompression(Buffer.from('etc/passwd\0')), 'none');
    assert.equal(detectCompression(Buffer.from([0x1f])), 'none');
  });
});

describe('applyLayer: what a layer puts on disk', () => {
  const T1 = new Date('2020-01-02T03:04:05Z');
  const T2 = new Date('2019-06-07T08:09:10Z');
  const members: Member[] = [
    dir('./', { mode: 0o755, mtime: T1 }),
    dir('etc/', { mode: 0o750, mtime: T1 }),
    file('etc/hostname', 'layer\n', { mode: 0o640, mtime: T2 }),
    file('bin/su', '#!/bin/sh\n', { mode: 0o4755 }), // bin/ itself is implied
    dir('tmp/', { mode: 0o1777 }),
    dir('ro/', { mode: 0o555, mtime: T1 }),
    file('ro/inside', 'written before ro/ became read-only'),
    sym('etc/localtime', '/usr/share/zoneinfo/UTC', { mtime: T2 }),
    hard('etc/hostname.bak', 'etc/hostname'),
  ];

  async function assertApplied(target: string, result: ApplyResult): Promise<void> {
    assert.equal(result.entries, members.length);
    assert.equal(result.bytesWritten, 'layer\n'.length + '#!/bin/sh\n'.length + 'written before ro/ became read-only'.length);
    assert.deepEqual(result.skipped, []);
    assert.equal(await readFile(join(target, 'etc/hostname'), 'utf8'), 'layer\n');
    assert.equal(await modeOf(join(target, 'etc/hostname')), 0o640);
    assert.equal(await mtimeOf(join(target, 'etc/hostname')), T2.getTime() / 1000);
    assert.equal(await modeOf(join(target, 'bin/su')), 0o4755, 'setuid survives');
    assert.equal(await modeOf(join(target, 'etc')), 0o750);
    assert.equal(await modeOf(join(target, 'tmp')), 0o1777, 'sticky bit');
    assert.equal(await modeOf(join(target, 'ro')), 0o555);
    assert.equal(await readFile(join(target, 'ro/inside'), 'utf8'), 'written before ro/ became read-only');
    assert.equal(await mtimeOf(join(target, 'etc')), T1.getTime() / 1000, 'dir mtime set after its members were written');
    assert.equal(await mtimeOf(join(target, 'ro')), T1.getTime() / 1000);
    assert.equal(await mtimeOf(target), T1.getTime() / 1000, 'the ./ member applies to the root');
    assert.equal(await readlink(join(target, 'etc/localtime')), '/usr/share/zoneinfo/UTC');
    assert.equal(await mtimeOf(join(target, 'etc/localtime')), T2.getTime() / 1000, 'symlink mtime (lutimes)');
    const a = await stat(join(target, 'etc/hostname'));
    const b = await stat(join(target, 'etc/hostname.bak'));
    assert.equal(a.ino, b.ino, 'hard link shares the inode');
    assert.equal(a.nlink, 2);
  }

  test('uncompressed tar: files, directories, symlinks, hard links, modes and mtimes', async () => {
    const target = await newTarget();
    await assertApplied(target, await apply(await tarOf(members), target));
  });

  test('gzip-compressed, read from a file stream', async () => {
    const target = await newTarget();
    const blob = join(base, `layer-${n}.tar.gz`);
    await writeFile(blob, gzipSync(await tarOf(members)));
    await assertApplied(target, await applyLayer(createReadStream(blob, { highWaterMark: 1000 }), target, options()));
  });

  test('zstd-compressed (a handcrafted frame of raw blocks, fed a few bytes at a time)', async () => {
    const target = await newTarget();
    const frame = zstdRawFrame(await tarOf(members), 1500);
    await assertApplied(target, await applyLayer(chunked(frame, 3), target, options()));
  });

  test('a zstd frame cut short is rejected', async () => {
    const target = await newTarget();
    const frame = zstdRawFrame(await tarOf(members), 1500);
    await assert.rejects(applyLayer(chunked(frame.subarray(0, 2000)), target, options()), (e: unknown) => isDomainError(e) && e.code === 'InvalidArgument' && /zstd/.test(e.message));
  });

  test('corrupt gzip and a truncated tar are rejected as invalid layers', async () => {
    const gz = gzipSync(await tarOf(members));
    gz.writeUInt8(gz.readUInt8(gz.length - 6) ^ 0xff, gz.length - 6); // in the CRC
    await assert.rejects(apply(gz, await newTarget()), (e: unknown) => isDomainError(e) && e.code === 'InvalidArgument' && /gzip/.test(e.message));
    const tar = await tarOf(members);
    await assert.rejects(apply(tar.subarray(0, 1300), await newTarget()), (e: unknown) => isDomainError(e) && e.code === 'InvalidArgument');
  });

  test('a failure of the input stream itself rejects with that error, not as a bad layer', async () => {
    const tar = await tarOf(members);
    const input = new Readable({ read() {} });
    input.push(tar.subarray(0, 1000));
    setTimeout(() => input.destroy(new Error('connection reset by registry')), 20);
    await assert.rejects(applyLayer(input, await newTarget(), options()), (e: unknown) => !isDomainError(e) && e instanceof Error && e.message === 'connection reset by registry');
  });

  test('a target that is not a directory is an error', async () => {
    await writeFile(join(base, 'plain-file'), '');
    await assert.rejects(apply(await tarOf([]), join(base, 'plain-file')), (e: unknown) => isDomainError(e) && e.field === 'target');
  });

  test('long names: a PAX path and a GNU ././@LongLink record', async () => {
    const target = await newTarget();
    const long = `${'d'.repeat(120)}/${'f'.repeat(150)}`;
    const gnuName = `g/${'n'.repeat(200)}`;
    const gnu = withTypeflag(await tarOf([file('././@LongLink', `${gnuName}\0`)]), '././@LongLink', 'L');
    const tail = await tarOf([file('truncated-name', 'gnu'), file(long, 'pax')]);
    const layer = Buffer.concat([gnu.subarray(0, gnu.length - 1024), tail]);
    await apply(layer, target);
    assert.equal(await readFile(join(target, long), 'utf8'), 'pax');
    assert.equal(await readFile(join(target, gnuName), 'utf8'), 'gnu');
    assert.ok(!existsSync(join(target, 'truncated-name')));
  });

  test('a symlinked directory inside the layer is followed for later members', async () => {
    const target = await newTarget();
    await apply(await tarOf([dir('real/'), sym('usr/lib', '../real'), sym('abslib', '/real'), file('usr/lib/a', 'a'), file('abslib/b', 'b')]), target);
    assert.equal(await readFile(join(target, 'real/a'), 'utf8'), 'a');
    assert.equal(await readFile(join(target, 'real/b'), 'utf8'), 'b');
    assert.ok((await lstat(join(target, 'usr/lib'))).isSymbolicLink(), 'the link itself stays a link');
  });

  test('fifos are made with the mkfifo tool, or skipped without it', async (t) => {
    const layer = await tarOf([{ header: { name: 'run/pipe', type: 'fifo', mode: 0o620 } }]);
    const without = await newTarget();
    const r = await apply(layer, without, { tools: {} });
    assert.deepEqual(r.skipped, [{ entry: 'run/pipe', reason: 'fifo: no mkfifo tool configured' }]);
    assert.ok(!existsSync(join(without, 'run/pipe')));
    if (tools.mkfifo === undefined) return t.skip('mkfifo not installed');
    const target = await newTarget();
    await apply(layer, target);
    const st = await lstat(join(target, 'run/pipe'));
    assert.ok(st.isFIFO());
    assert.equal(st.mode & 0o7777, 0o620);
  });

  test('device nodes are skipped with a reason; the rest of the layer is applied', async () => {
    const target = await newTarget();
    const r = await apply(
      await tarOf([
        { header: { name: 'dev/null', type: 'character-device', mode: 0o666, devmajor: 1, devminor: 3 } },
        { header: { name: 'dev/sda', type: 'block-device', mode: 0o660, devmajor: 8, devminor: 0 } },
        file('etc/after', 'still applied'),
      ]),
      target,
    );
    assert.deepEqual(r.skipped, [
      { entry: 'dev/null', reason: 'character device 1:3 cannot be created without privilege' },
      { entry: 'dev/sda', reason: 'block device 8:0 cannot be created without privilege' },
    ]);
    assert.equal(r.entries, 3);
    assert.deepEqual(await readdir(join(target, 'dev')), []);
    assert.equal(await readFile(join(target, 'etc/after'), 'utf8'), 'still applied');
  });

  test('a member of a type the applier does not know is rejected, naming it', async () => {
    const tar = withTypeflag(await tarOf([file('sparse-thing', 'x')]), 'sparse-thing', 'S');
    await assert.rejects(apply(tar, await newTarget()), (e: unknown) => isDomainError(e) && e.code === 'InvalidArgument' && e.message.includes('"sparse-thing"') && /unsupported tar type/.test(e.message));
  });

  test('what is already there is replaced: file over dir, dir over file, dir over dir merged, file over symlink', async () => {
    const target = await newTarget();
    await mkdir(join(target, 'was-dir/sub'), { recursive: true });
    await writeFile(join(target, 'was-dir/sub/old'), 'old');
    await writeFile(join(target, 'was-file'), 'old');
    await mkdir(join(target, 'merged'), { mode: 0o700 });
    await writeFile(join(target, 'merged/lower'), 'lower');
    await symlink('merged/lower', join(target, 'was-link'));
    await apply(await tarOf([file('was-dir', 'now a file'), dir('was-file/'), dir('merged/', { mode: 0o751 }), file('merged/upper', 'upper'), file('was-link', 'now a file')]), target);
    assert.equal(await readFile(join(target, 'was-dir'), 'utf8'), 'now a file');
    assert.ok((await lstat(join(target, 'was-file'))).isDirectory());
    assert.deepEqual((await readdir(join(target, 'merged'))).sort(), ['lower', 'upper']);
    assert.equal(await modeOf(join(target, 'merged')), 0o751);
    assert.ok((await lstat(join(target, 'was-link'))).isFile());
    assert.equal(await readFile(join(target, 'merged/lower'), 'utf8'), 'lower', 'writing over the link did not write through it');
  });

  test('PAX xattrs are applied with setfattr; overlay xattrs and a missing tool are recorded as skipped', async (t) => {
    const layer = await tarOf([file('f', 'x', { pax: { 'SCHILY.xattr.user.mime': 'text/plain', 'SCHILY.xattr.user.overlay.opaque': 'y' } })]);
    const without = await newTarget();
    const r = await apply(layer, without, { tools: {} });
    assert.deepEqual(r.skipped, [
      { entry: 'f', reason: 'xattr user.mime: no setfattr tool configured' },
      { entry: 'f', reason: 'xattr user.overlay.opaque: reserved for overlayfs, not taken from a layer' },
    ]);
    assert.equal(await readFile(join(without, 'f'), 'utf8'), 'x');
    if (noXattrs !== undefined) return t.skip(noXattrs);
    const target = await newTarget();
    const applied = await apply(layer, target);
    assert.equal(await getXattr(join(target, 'f'), 'user.mime'), 'text/plain');
    assert.equal(await getXattr(join(target, 'f'), 'user.overlay.opaque'), undefined);
    assert.equal(applied.skipped.length, 1);
  });

  test('an xattr the filesystem refuses is skipped, not fatal', async (t) => {
    if (tools.setfattr === undefined) return t.skip('setfattr not installed');
    const target = await newTarget();
    const r = await apply(await tarOf([file('f', 'x', { pax: { 'SCHILY.xattr.bogus.ns': 'v' } })]), target);
    assert.equal(r.skipped.length, 1);
    assert.equal(r.skipped[0]?.entry, 'f');
    assert.match(r.skipped[0]?.reason ?? '', /^xattr bogus\.ns: /);
    assert.equal(await readFile(join(target, 'f'), 'utf8'), 'x');
  });
});

describe('applyLayer: ownership', () => {
  const owned = (uid: number, gid: number): Member => file('owned', 'x', { uid, gid, mode: 0o2755 });

  test('ids above 65535 are outside the node user namespace: the error names the entry and the id', async () => {
    await assert.rejects(
      apply(await tarOf([owned(100000, 0)]), await newTarget(), { preserveOwnership: true }),
      (e: unknown) => isDomainError(e) && e.code === 'InvalidArgument' && e.field === 'owned' && e.message.includes('"owned"') && e.message.includes('uid 100000'),
    );
    await assert.rejects(apply(await tarOf([owned(0, 70000)]), await newTarget(), { preserveOwnership: true }), /gid 70000/);
  });

  test('preserveOwnership false ignores the tar ids', async () => {
    const target = await newTarget();
    await apply(await tarOf([owned(100000, 100000)]), target);
    assert.equal((await stat(join(target, 'owned'))).uid, process.getuid?.());
  });

  test('preserveOwnership true chowns to the tar ids, and setgid survives the chown', async (t) => {
    if (process.getuid?.() !== 0) return t.skip('needs uid 0 (as inside the node user namespace)');
    const target = await newTarget();
    await apply(await tarOf([owned(1234, 5678), sym('link', 'owned', { uid: 42, gid: 43 })]), target, { preserveOwnership: true });
    const st = await stat(join(target, 'owned'));
    assert.deepEqual([st.uid, st.gid, st.mode & 0o7777], [1234, 5678, 0o2755]);
    const l = await lstat(join(target, 'link'));
    assert.deepEqual([l.uid, l.gid], [42, 43]);
  });

  test('a chown the kernel refuses is an error naming the entry and the id', async (t) => {
    if (process.getuid?.() === 0) return t.skip('uid 0 may chown to any id');
    await assert.rejects(
      apply(await tarOf([owned(1234, 5678)]), await newTarget(), { preserveOwnership: true }),
      (e: unknown) => isDomainError(e) && e.code === 'PermissionDenied' && e.message.includes('"owned"') && e.message.includes('uid 1234'),
    );
  });
});

describe('applyLayer: whiteouts', () => {
  async function lowerRootfs(): Promise<string> {
    const target = await newTarget();
    await mkdir(join(target, 'etc/conf.d'), { recursive: true });
    await writeFile(join(target, 'etc/passwd'), 'lower');
    await writeFile(join(target, 'etc/group'), 'lower');
    await writeFile(join(target, 'etc/conf.d/a'), 'lower');
    await mkdir(join(target, 'var/cache/apt'), { recursive: true });
    await writeFile(join(target, 'var/cache/apt/pkgcache.bin'), 'lower');
    await writeFile(join(target, 'var/cache/keep-me-not'), 'lower');
    await mkdir(join(target, 'opt/app/data'), { recursive: true });
    await writeFile(join(target, 'opt/app/data/lower'), 'lower');
    await writeFile(join(target, 'opt/app/lower'), 'lower');
    return target;
  }

  test('merge mode: .wh.NAME deletes a file and a whole directory', async () => {
    const target = await lowerRootfs();
    const r = await apply(await tarOf([file('etc/.wh.passwd', ''), file('etc/.wh.conf.d', ''), file('.wh.nothing-there', '')]), target);
    assert.deepEqual((await readdir(join(target, 'etc'))).sort(), ['group']);
    assert.equal(r.entries, 3);
  });

  test('merge mode: an opaque dir loses the lower content but keeps what this layer wrote, before or after the marker', async () => {
    const target = await lowerRootfs();
    await apply(
      await tarOf([
        dir('var/cache/'),
        file('var/cache/new-before', 'upper'),
        file('var/cache/.wh..wh..opq', ''),
        file('var/cache/new-after', 'upper'),
        file('opt/app/data/upper', 'upper'), // opt/app/ itself is not a member: it holds one
        file('opt/app/.wh..wh..opq', ''),
      ]),
      target,
    );
    assert.deepEqual((await readdir(join(target, 'var/cache'))).sort(), ['new-after', 'new-before']);
    assert.deepEqual(await readdir(join(target, 'opt/app')), ['data']);
    assert.deepEqual(await readdir(join(target, 'opt/app/data')), ['upper'], 'the lower half of a kept directory is hidden too');
    assert.equal(await readFile(join(target, 'etc/passwd'), 'utf8'), 'lower', 'other directories untouched');
  });

  test('merge mode: a whiteout does not delete what the same layer wrote, only the lower content of its directory', async () => {
    const target = await lowerRootfs();
    await apply(await tarOf([file('etc/passwd', 'upper'), file('etc/.wh.passwd', ''), file('var/cache/apt/new', 'upper'), file('var/cache/.wh.apt', '')]), target);
    assert.equal(await readFile(join(target, 'etc/passwd'), 'utf8'), 'upper');
    assert.deepEqual(await readdir(join(target, 'var/cache/apt')), ['new']);
    assert.ok(existsSync(join(target, 'var/cache/keep-me-not')), 'a sibling is not touched');
  });

  test('merge mode: whiteouts of links remove the link, never what it points to', async () => {
    const target = await lowerRootfs();
    const elsewhere = join(base, `elsewhere-${n}`);
    await mkdir(elsewhere);
    await writeFile(join(elsewhere, 'precious'), 'keep');
    await mkdir(join(target, 'links'));
    await symlink(elsewhere, join(target, 'links/to-dir'));
    await symlink(join(elsewhere, 'precious'), join(target, 'links/to-file'));
    await mkdir(join(target, 'opq'));
    await symlink(elsewhere, join(target, 'opq/to-dir'));
    await apply(await tarOf([file('links/.wh.to-dir', ''), file('links/.wh.to-file', ''), file('opq/.wh..wh..opq', '')]), target);
    assert.deepEqual(await readdir(join(target, 'links')), []);
    assert.deepEqual(await readdir(join(target, 'opq')), []);
    assert.equal(await readFile(join(elsewhere, 'precious'), 'utf8'), 'keep');
  });

  test('layer mode: .wh.NAME becomes an overlay whiteout, a 0:0 character device', async (t) => {
    const layer = await tarOf([dir('etc/'), file('etc/.wh.passwd', '')]);
    const without = await newTarget();
    const r = await apply(layer, without, { mode: 'layer', tools: {} });
    assert.deepEqual(r.skipped, [{ entry: 'etc/.wh.passwd', reason: 'whiteout: no mknod tool configured, the lower file will show through' }]);
    if (noWhiteouts !== undefined) return t.skip(noWhiteouts);
    const target = await newTarget();
    await apply(layer, target, { mode: 'layer' });
    const st = await lstat(join(target, 'etc/passwd'));
    assert.ok(st.isCharacterDevice(), 'a character device');
    assert.equal(st.rdev, 0, 'device 0:0');
    assert.ok(!existsSync(join(target, 'etc/.wh.passwd')), 'the .wh. file itself is not written');
  });

  test('a 0:0 character device member is an overlay whiteout in layer mode, and skipped in merge mode', async (t) => {
    const layer = await tarOf([{ header: { name: 'gone', type: 'character-device', devmajor: 0, devminor: 0 } }]);
    const merged = await newTarget();
    const r = await apply(layer, merged);
    assert.deepEqual(r.skipped, [{ entry: 'gone', reason: 'character device 0:0 cannot be created without privilege' }]);
    if (noWhiteouts !== undefined) return t.skip(noWhiteouts);
    const target = await newTarget();
    await apply(layer, target, { mode: 'layer' });
    const st = await lstat(join(target, 'gone'));
    assert.ok(st.isCharacterDevice() && st.rdev === 0);
  });

  test('layer mode: .wh..wh..opq sets user.overlay.opaque=y on its directory', async (t) => {
    const layer = await tarOf([dir('var/'), dir('var/cache/'), file('var/cache/.wh..wh..opq', ''), file('var/cache/new', 'upper')]);
    const without = await newTarget();
    const r = await apply(layer, without, { mode: 'layer', tools: {} });
    assert.equal(r.skipped.length, 1);
    assert.equal(r.skipped[0]?.entry, 'var/cache/.wh..wh..opq');
    if (noXattrs !== undefined) return t.skip(noXattrs);
    const target = await newTarget();
    await apply(layer, target, { mode: 'layer' });
    assert.equal(await getXattr(join(target, 'var/cache'), 'user.overlay.opaque'), 'y');
    assert.deepEqual(await readdir(join(target, 'var/cache')), ['new']);
    assert.equal(await getXattr(join(target, 'var'), 'user.overlay.opaque'), undefined);
  });

  test('aufs bookkeeping whiteouts are skipped', async () => {
    const target = await newTarget();
    const r = await apply(await tarOf([file('.wh..wh.plnk', '')]), target);
    assert.equal(r.skipped.length, 1);
    assert.deepEqual(await readdir(target), []);
  });
});

describe('applyLayer: abort', () => {
  test('an aborted signal stops the apply and rejects', async () => {
    const target = await newTarget();
    const tar = await tarOf([file('a', 'x'.repeat(5000))]);
    const input = new PassThrough();
    input.write(tar.subarray(0, 1536)); // the header and part of the data; the rest never comes
    const ac = new AbortController();
    const applying = applyLayer(input, target, options({ signal: ac.signal }));
    setTimeout(() => ac.abort(), 50);
    await assert.rejects(applying, (e: unknown) => e instanceof Error && e.name === 'AbortError');
    assert.ok(input.destroyed, 'the input stream was destroyed');
  });

  test('a signal aborted before the start rejects at once', async () => {
    await assert.rejects(applyLayer(chunked(await tarOf([file('a', 'x')])), await newTarget(), options({ signal: AbortSignal.abort() })), { name: 'AbortError' });
  });
});

// ---- Hostile layers -------------------------------------------------------

interface Sandbox {
  target: string;
  outside: string;
  /** outside, as a relative path from target (../../../outside). */
  up: string;
}

/** Everything under base/c<n> except target: path, type, mode, size, mtime and content. */
async function snapshot(top: string, skip: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (p: string): Promise<void> => {
    if (p === skip) return;
    const st = await lstat(p);
    const content = st.isFile() ? await readFile(p, 'utf8') : st.isSymbolicLink() ? `-> ${await readlink(p)}` : '';
    out.push(`${relative(top, p) || '.'} ${st.mode.toString(8)} ${st.size} ${st.mtimeMs} ${st.uid}:${st.gid} ${content}`);
    if (!st.isDirectory()) return;
    for (const name of (await readdir(p)).sort()) await walk(join(p, name));
  };
  await walk(top);
  return out;
}

async function sandbox(): Promise<Sandbox & { top: string }> {
  const top = join(base, `c${++n}`);
  const target = join(top, 'deep/er/target');
  const outside = join(top, 'outside');
  await mkdir(target, { recursive: true });
  await mkdir(outside);
  await writeFile(join(outside, 'known.txt'), 'sentinel');
  await chmod(join(outside, 'known.txt'), 0o644);
  const old = new Date('2000-01-01T00:00:00Z');
  await utimes(join(outside, 'known.txt'), old, old);
  await utimes(outside, old, old);
  return { top, target, outside, up: relative(target, outside) };
}

interface HostileCase {
  title: string;
  mode?: 'layer' | 'merge';
  /** Pre-existing content of target (a lower layer, in merge mode). */
  lower?: (s: Sandbox) => Promise<void>;
  members: (s: Sandbox) => Member[];
  /** The entry a rejection must name; absent: the layer applies, contained. */
  rejects?: string;
  /** For contained cases: where the content landed instead. */
  contained?: (s: Sandbox) => Promise<void>;
}

const hostile: HostileCase[] = [
  { title: '../evil', members: () => [file('../evil', 'x')], rejects: '../evil' },
  { title: 'a/../../evil', members: () => [dir('a/'), file('a/../../evil', 'x')], rejects: 'a/../../evil' },
  { title: 'an absolute name /etc/evil', members: () => [file('/etc/evil', 'x')], rejects: '/etc/evil' },
  { title: 'a PAX path that climbs out', members: () => [file('innocent', 'x', { pax: { path: '../../evil' } })], rejects: '../../evil' },
  { title: 'symlink link -> ../../../outside, then link/pwned', members: (s) => [sym('link', s.up), file('link/pwned', 'x')], rejects: 'link/pwned' },
  { title: 'a chain of links that climbs out', members: (s) => [sym('a', 'b'), sym('b', `sub/../${s.up}`), dir('sub/'), file('a/pwned', 'x')], rejects: 'a/pwned' },
  { title: 'a symlink loop', members: () => [sym('l1', 'l2'), sym('l2', 'l1'), file('l1/x', 'x')], rejects: 'l1/x' },
  {
    title: 'a lower layer’s symlink that climbs out, then lower/pwned',
    lower: async (s) => symlink(s.up, join(s.target, 'lower')),
    members: () => [file('lower/pwned', 'x')],
    rejects: 'lower/pwned',
  },
  {
    title: 'symlink abs -> /absolute/outside, then abs/pwned lands inside target',
    members: (s) => [sym('abs', s.outside), file('abs/pwned', 'x')],
    contained: async (s) => assert.equal(await readFile(join(s.target, s.outside, 'pwned'), 'utf8'), 'x'),
  },
  {
    title: 'symlink f -> outside/known.txt, then a file f: the link is replaced',
    members: (s) => [sym('f', join(s.outside, 'known.txt')), sym('g', `${s.up}/known.txt`), file('f', 'x'), file('g', 'y')],
    contained: async (s) => {
      assert.equal(await readFile(join(s.target, 'f'), 'utf8'), 'x');
      assert.equal(await readFile(join(s.target, 'g'), 'utf8'), 'y');
    },
  },
  {
    title: 'symlink d -> outside dir, then a directory d with mode 0777',
    members: (s) => [sym('d', s.up), dir('d/', { mode: 0o777 }), file('d/x', 'x')],
    contained: async (s) => assert.ok((await lstat(join(s.target, 'd'))).isDirectory()),
  },
  { title: 'hard link to ../../outside-file', members: (s) => [hard('hl', `${s.up}/known.txt`)], rejects: 'hl' },
  { title: 'hard link to /absolute/outside-file', members: (s) => [hard('hl', join(s.outside, 'known.txt'))], rejects: 'hl' },
  { title: 'hard link through a symlink to outside', members: (s) => [sym('abs', s.outside), hard('hl', 'abs/known.txt')], rejects: 'hl' },
  { title: 'hard link through a relative symlink climbing out', members: (s) => [sym('up', s.up), hard('hl', 'up/known.txt')], rejects: 'hl' },
  { title: 'hard link to a file the layer did not write', lower: async (s) => writeFile(join(s.target, 'lowerfile'), 'l'), members: () => [hard('hl', 'lowerfile')], rejects: 'hl' },
  { title: 'whiteout ../../../outside/.wh.known.txt', members: (s) => [file(`${s.up}/.wh.known.txt`, '')], rejects: '' },
  { title: 'whiteout ../../../outside/.wh.known.txt (layer mode)', mode: 'layer', members: (s) => [file(`${s.up}/.wh.known.txt`, '')], rejects: '' },
  { title: 'whiteout .wh... (the parent of the root)', members: () => [file('.wh...', '')], rejects: '.wh...' },
  { title: 'whiteout .wh.. (the root itself)', members: () => [file('.wh..', '')], rejects: '.wh..' },
  { title: 'whiteout through a symlink climbing out', members: (s) => [sym('up', s.up), file('up/.wh.known.txt', '')], rejects: 'up/.wh.known.txt' },
  { title: 'opaque marker through a symlink climbing out', members: (s) => [sym('up', s.up), file('up/.wh..wh..opq', '')], rejects: 'up/.wh..wh..opq' },
  {
    title: 'whiteout and opaque marker through an absolute symlink stay inside',
    members: (s) => [sym('abs', s.outside), file('abs/.wh.known.txt', ''), file('abs/.wh..wh..opq', '')],
    contained: async (s) => assert.ok((await lstat(join(s.target, 'abs'))).isSymbolicLink()),
  },
  {
    title: 'whiteout through an absolute symlink (layer mode) stays inside',
    mode: 'layer',
    members: (s) => [sym('abs', s.outside), file('abs/.wh.known.txt', '')],
    contained: async (s) => assert.ok(existsSync(join(s.target, s.outside))),
  },
];

describe('applyLayer: hostile layers write nothing outside target', () => {
  for (const c of hostile) {
    test(c.title, async () => {
      const s = await sandbox();
      await c.lower?.(s);
      const etcEvil = existsSync('/etc/evil');
      const before = await snapshot(s.top, s.target);
      const applying = applyLayer(chunked(await tarOf(c.members(s))), s.target, options({ mode: c.mode ?? 'merge' }));
      if (c.rejects !== undefined) {
        const entry = c.rejects === '' ? `${s.up}/.wh.known.txt` : c.rejects;
        await assert.rejects(applying, (e: unknown) => {
          assert.ok(isDomainError(e), `a domain error, not ${String(e)}`);
          assert.equal(e.code, 'InvalidArgument');
          assert.ok(e.message.startsWith(`layer entry "${entry}"`), `the message names the entry: ${e.message}`);
          assert.equal(e.field, entry);
          return true;
        });
      } else {
        await applying;
        await c.contained?.(s);
      }
      assert.deepEqual(await snapshot(s.top, s.target), before, 'nothing outside target changed');
      assert.equal(existsSync('/etc/evil'), etcEvil, '/etc/evil untouched');
    });
  }
});
