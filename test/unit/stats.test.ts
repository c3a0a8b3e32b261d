import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';

import { asSeenFromPeer, readNetDev } from '../../pkg/netns/net_dev.js';
import { readCgroupUsage } from '../../pkg/sandbox/cgroup_stats.js';
import { processesByRoot, rootKeyOf } from '../../pkg/sandbox/proc_accounting.js';
import { CpuRate, StatsCollector } from '../../pkg/sandbox/stats_collector.js';
import { silentLogger } from '../../pkg/log/logger.js';
import { fakeProc, netDevText } from '../lib/fake_proc.js';
import { tempFolders } from '../lib/unit.js';

// Where container stats come from: a delegated cgroup v2 folder, or the
// processes' own /proc files (these hosts), and the state kept between two
// samples (the CPU rate; the CPU time of processes gone). Fake /proc and
// cgroup trees stand in for the kernel, plus one look at the real /proc.

const { fresh, root } = tempFolders('usernode-stats-');

describe('procfs accounting', () => {
  test("finds a container's processes by their root, whatever their parent, and reads their CPU, faults and memory", async () => {
    const rootfsA = await fresh('rootfs-a');
    const rootfsB = await fresh('rootfs-b');
    const proc = await fresh('proc');
    await fakeProc(proc, [
      { pid: 10, ppid: 5, root: rootfsA, utime: 150, stime: 50, cutime: 10, cstime: 0, minflt: 7, majflt: 2, pssKb: 300, comm: 'my (odd) name' },
      // An exec'd process: a child of runc (pid 99, outside), still in container A.
      { pid: 11, ppid: 99, root: rootfsA, utime: 100, pssKb: 100, threads: 3 },
      { pid: 20, ppid: 5, root: rootfsB, utime: 1000 },
      { pid: 30, ppid: 1, root: '/' },
    ]);
    const a = (await rootKeyOf(rootfsA))!;
    const b = (await rootKeyOf(rootfsB))!;
    const found = await processesByRoot(new Set([a]), proc);
    assert.deepEqual([...found.keys()], [a]);
    const procs = found.get(a)!.sort((x, y) => x.pid - y.pid);
    assert.deepEqual(
      procs.map((p) => p.pid),
      [10, 11],
    );
    const p10 = procs[0]!;
    assert.equal(p10.ppid, 5);
    // (150 + 10) ticks user, 50 system, at 10 ms a tick.
    assert.equal(p10.userNs, 1_600_000_000n);
    assert.equal(p10.systemNs, 500_000_000n);
    assert.equal(p10.cpuNs, 2_100_000_000n);
    assert.equal(p10.pageFaults, 9n);
    assert.equal(p10.majorPageFaults, 2n);
    assert.equal(p10.memoryBytes, 300n * 1024n, 'Pss, not RSS, when smaps_rollup is there');
    assert.equal(p10.rssAnonBytes, 100n * 1024n);
    assert.equal(procs[1]!.threads, 3);
    assert.equal((await processesByRoot(new Set([b]), proc)).get(b)?.length, 1);
  });

  test('falls back to RSS without smaps_rollup', async () => {
    const rootfs = await fresh('rootfs');
    const proc = await fresh('proc');
    await fakeProc(proc, [{ pid: 10, ppid: 1, root: rootfs, anonKb: 200 }]);
    const key = (await rootKeyOf(rootfs))!;
    assert.equal((await processesByRoot(new Set([key]), proc)).get(key)?.[0]?.memoryBytes, 250n * 1024n);
  });

  test('in the real /proc, a child process is found by its root and has memory', async () => {
    const child = spawn(process.execPath, ['-e', 'console.log("up"); setInterval(() => {}, 1000)'], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await once(child.stdout!, 'data');
      const key = (await rootKeyOf('/'))!;
      const mine = (await processesByRoot(new Set([key]))).get(key)?.find((p) => p.pid === child.pid);
      assert.ok(mine, 'the child was not found by its root');
      assert.equal(mine.ppid, process.pid);
      assert.ok(mine.memoryBytes > 0n);
      assert.ok(mine.threads >= 1);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

describe('StatsCollector', () => {
  const second = 1_000_000_000n;

  async function setUp(): Promise<{ collector: StatsCollector; proc: string; rootfs: string; bundle: string; clock: { now: bigint } }> {
    const rootfs = await fresh('rootfs');
    const bundle = await fresh('bundle');
    await writeFile(join(bundle, 'config.json'), JSON.stringify({ linux: {} }));
    const proc = await fresh('proc');
    const clock = { now: 1_000n * second };
    const collector = new StatsCollector({ log: silentLogger, noCgroupReason: 'hybrid', procRoot: proc, cgroupRoot: await fresh('nocgroup'), now: () => clock.now });
    return { collector, proc, rootfs, bundle, clock };
  }

  test('the CPU rate comes from two samples; the first has none', async () => {
    const { collector, proc, rootfs, bundle, clock } = await setUp();
    const target = [{ id: 'c1', rootfs, bundle }];
    await fakeProc(proc, [{ pid: 10, ppid: 5, root: rootfs, utime: 100 }]);
    const first = (await collector.sample(target)).get('c1')!;
    assert.equal(first.source, 'procfs');
    assert.equal(first.cpu.usageNs, second);
    assert.equal(first.cpu.nanoCores, undefined);
    assert.equal(first.memory.limitBytes, undefined, 'no limit is enforced without a cgroup');
    clock.now += 2n * second;
    await fakeProc(proc, [{ pid: 10, ppid: 5, root: rootfs, utime: 200 }]);
    const next = (await collector.sample(target)).get('c1')!;
    assert.equal(next.cpu.usageNs, 2n * second);
    assert.equal(next.cpu.nanoCores, 500_000_000n, 'one CPU second in two seconds is half a core');
    assert.equal(next.timestamp, 1_002n * second);
    assert.match(collector.describe().source, /procfs/);
    assert.equal(collector.describe().reason, 'hybrid');
  });

  test("an exec'd process that ended keeps its CPU time; a child its parent reaped is not counted twice", async () => {
    const { collector, proc, rootfs, bundle, clock } = await setUp();
    const target = [{ id: 'c1', rootfs, bundle }];
    await fakeProc(proc, [
      { pid: 10, ppid: 5, root: rootfs, utime: 100 },
      { pid: 11, ppid: 10, root: rootfs, utime: 50 },
      { pid: 12, ppid: 99, root: rootfs, utime: 30 },
    ]);
    assert.equal((await collector.sample(target)).get('c1')!.cpu.usageNs, 1_800_000_000n);
    clock.now += 2n * second;
    // 11 was reaped by 10 (its time moved to 10's cutime); 12, a child of runc, is gone.
    await fakeProc(proc, [{ pid: 10, ppid: 5, root: rootfs, utime: 100, cutime: 50 }]);
    const u = (await collector.sample(target)).get('c1')!;
    assert.equal(u.cpu.usageNs, 1_800_000_000n);
    assert.equal(u.processes, 1);
    assert.deepEqual(u.pids, [10]);
  });

  test('a container whose spec names a cgroup is read from that cgroup v2 folder', async () => {
    const cgroupRoot = await fresh('cgroup');
    const dir = join(cgroupRoot, 'user.slice', 'pod1', 'c1');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'cpu.stat'), 'usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 10\nnr_throttled 2\nthrottled_usec 300\n');
    await writeFile(join(dir, 'memory.current'), '10485760\n');
    await writeFile(join(dir, 'memory.max'), '67108864\n');
    await writeFile(join(dir, 'memory.stat'), 'anon 4194304\nfile 6291456\ninactive_file 2097152\nfile_mapped 1048576\nkernel 65536\npgfault 1234\npgmajfault 5\n');
    await writeFile(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
    await writeFile(join(dir, 'pids.current'), '2\n');
    await writeFile(join(dir, 'cgroup.procs'), '10\n11\n');
    await writeFile(join(dir, 'cgroup.threads'), '10\n11\n12\n');
    const bundle = await fresh('bundle');
    await writeFile(join(bundle, 'config.json'), JSON.stringify({ linux: { cgroupsPath: '/user.slice/pod1/c1' } }));
    const collector = new StatsCollector({ log: silentLogger, noCgroupReason: '', procRoot: await fresh('proc'), cgroupRoot, now: () => 5n * second });
    const u = (await collector.sample([{ id: 'c1', rootfs: await fresh('rootfs'), bundle }])).get('c1')!;
    assert.equal(u.source, 'cgroup');
    assert.equal(u.cpu.usageNs, 2_500_000_000n);
    assert.equal(u.cpu.throttledPeriods, 2n);
    assert.equal(u.memory.usageBytes, 10485760n);
    assert.equal(u.memory.workingSetBytes, 10485760n - 2097152n, 'working set is usage less inactive file pages');
    assert.equal(u.memory.rssBytes, 4194304n);
    assert.equal(u.memory.limitBytes, 67108864n);
    assert.equal(u.memory.pageFaults, 1234n);
    assert.equal(u.memory.failcnt, 3n);
    assert.equal(u.memory.oomEvents, 1n);
    assert.equal(u.processes, 2);
    assert.equal(u.threads, 3);
    assert.deepEqual(u.pids, [10, 11]);
    assert.match(collector.describe().source, /cgroup v2/);
  });

  test('an unlimited cgroup has no limit', async () => {
    const dir = await fresh('cg');
    await writeFile(join(dir, 'cpu.stat'), 'usage_usec 1\n');
    await writeFile(join(dir, 'memory.max'), 'max\n');
    assert.equal((await readCgroupUsage(dir))!.memory.limitBytes, undefined);
    assert.equal(await readCgroupUsage(join(dir, 'missing')), undefined);
  });

  test('a rate is not taken over a window shorter than a second, and not from a counter that went back', () => {
    const r = new CpuRate();
    assert.equal(r.of('x', 0n, 0n), undefined);
    assert.equal(r.of('x', 2n * second, second), 500_000_000n);
    assert.equal(r.of('x', 2n * second + 1000n, 3n * second), 500_000_000n, 'the previous rate stands');
    assert.equal(r.of('x', 4n * second, 0n), undefined);
    r.keepOnly(new Set());
    assert.equal(r.of('x', 10n * second, 0n), undefined, 'forgotten');
  });
});

describe('network counters', () => {
  test('reads /proc/PID/net/dev and turns a veth end round', async () => {
    const f = join(await fresh('net'), 'dev');
    await writeFile(
      f,
      netDevText([
        ['lo', 100, 2, 0, 0, 100, 2, 0, 0],
        ['eth0', 5000, 40, 1, 2, 3000, 30, 3, 4],
      ]),
    );
    const c = await readNetDev(f);
    assert.deepEqual(
      c.map((i) => i.name),
      ['lo', 'eth0'],
    );
    const eth0 = c[1]!;
    assert.deepEqual([eth0.rxBytes, eth0.rxPackets, eth0.rxErrors, eth0.rxDropped, eth0.txBytes, eth0.txPackets, eth0.txErrors, eth0.txDropped], [5000n, 40n, 1n, 2n, 3000n, 30n, 3n, 4n]);
    const peer = asSeenFromPeer(eth0, 'eth0');
    assert.equal(peer.rxBytes, 3000n);
    assert.equal(peer.txErrors, 1n);
    assert.deepEqual(await readNetDev(join(root(), 'no-such')), []);
  });

  test("this process's own /proc/self/net/dev has loopback", async () => {
    assert.ok((await readNetDev('/proc/self/net/dev')).some((i) => i.name === 'lo'));
  });
});
