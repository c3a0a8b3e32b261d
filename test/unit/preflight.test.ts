import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import {
  type CheckResult,
  cniPlugins,
  fatalProblems,
  formatReport,
  type HostProbe,
  type PreflightInput,
  runPreflight,
  type ToolPaths,
} from '../../pkg/node/preflight.js';

// A fake host: every prerequisite of a rootless node is met unless a test
// changes one field. Paths not in `files`/`stats` do not exist.

type Stat = NonNullable<Awaited<ReturnType<HostProbe['stat']>>>;

interface FakeHost {
  uid: number;
  username: string;
  nodeVersion: string;
  files: Map<string, string>;
  stats: Map<string, Stat>;
  executables: Set<string>;
  readWritable: Set<string>;
  userNamespaceError: string | undefined;
  /** getcap output per path; absent = no capabilities. */
  caps: Map<string, string | 'unknown'>;
}

const uid = 1000;
const user = 'alice';
const runtimeDir = `/run/user/${uid}`;
const cniBinDir = '/usr/lib/cni';

function tools(): ToolPaths {
  return {
    rootlesskit: '/usr/bin/rootlesskit',
    slirp4netns: '/usr/bin/slirp4netns',
    newuidmap: '/usr/bin/newuidmap',
    newgidmap: '/usr/bin/newgidmap',
    runc: '/usr/sbin/runc',
    conmon: '/usr/bin/conmon',
    catatonit: '/usr/bin/catatonit',
    nsenter: '/usr/bin/nsenter',
    iptables: '/usr/sbin/iptables',
    cniBinDir,
  };
}

function goodHost(): FakeHost {
  const t = tools();
  const executables = new Set<string>();
  for (const [k, v] of Object.entries(t)) if (k !== 'cniBinDir' && v) executables.add(v);
  for (const p of cniPlugins) executables.add(`${cniBinDir}/${p}`);
  const file = (mode: number, owner = 0): Stat => ({ mode: 0o100000 | mode, uid: owner, isCharacterDevice: false, isDirectory: false });
  return {
    uid,
    username: user,
    nodeVersion: 'v20.11.1',
    files: new Map([
      ['/etc/subuid', `${user}:100000:65536\n`],
      ['/etc/subgid', `${user}:100000:65536\n`],
    ]),
    stats: new Map<string, Stat>([
      ['/usr/bin/newuidmap', file(0o4755)],
      ['/usr/bin/newgidmap', file(0o4755)],
      ['/dev/net/tun', { mode: 0o020666, uid: 0, isCharacterDevice: true, isDirectory: false }],
      [runtimeDir, { mode: 0o040700, uid, isCharacterDevice: false, isDirectory: true }],
    ]),
    executables,
    readWritable: new Set(['/dev/net/tun']),
    userNamespaceError: undefined,
    caps: new Map(),
  };
}

function probe(h: FakeHost): HostProbe {
  return {
    uid: h.uid,
    username: h.username,
    nodeVersion: h.nodeVersion,
    readFile: async (p) => h.files.get(p),
    stat: async (p) => h.stats.get(p),
    canReadWrite: async (p) => h.readWritable.has(p),
    isExecutable: async (p) => h.executables.has(p),
    userNamespaceError: async () => h.userNamespaceError,
    fileCapabilities: async (p) => h.caps.get(p),
  };
}

function input(over: Partial<PreflightInput> = {}): PreflightInput {
  return { tools: tools(), xdgRuntimeDir: runtimeDir, cgroupWarning: undefined, ...over };
}

async function check(h: FakeHost, over: Partial<PreflightInput> = {}): Promise<CheckResult[]> {
  return runPreflight(probe(h), input(over));
}

function byName(results: readonly CheckResult[], name: string): CheckResult {
  const r = results.find((x) => x.name === name);
  assert.ok(r, `no check named ${name}; got ${results.map((x) => x.name).join(', ')}`);
  return r;
}

function fatalNames(results: readonly CheckResult[]): string[] {
  return fatalProblems(results).map((r) => r.name);
}

/** The `usermod` range of a fix, as [first, last]. */
function rangeOfFix(fix: string | undefined, flag: string): [number, number] {
  const m = new RegExp(`^sudo usermod ${flag} (\\d+)-(\\d+) ${user}$`).exec(fix ?? '');
  assert.ok(m, `fix is not a usermod ${flag} line: ${fix}`);
  return [Number(m[1]), Number(m[2])];
}

describe('runPreflight on a good host', () => {
  test('has no fatal problem and the report says so', async () => {
    const results = await check(goodHost());
    assert.deepEqual(fatalProblems(results), []);
    assert.ok(results.every((r) => r.ok), formatReport(results));
    const report = formatReport(results);
    assert.match(report, /All prerequisites are met/);
    assert.doesNotMatch(report, /FAIL|fix:|sudo/);
  });

  test('a subid range split over two lines adds up', async () => {
    const h = goodHost();
    h.files.set('/etc/subuid', `${user}:100000:32768\nbob:200000:65536\n${uid}:300000:32768\n`);
    const results = await check(h);
    assert.equal(byName(results, '/etc/subuid').ok, true);
  });
});

describe('runPreflight finds each problem with the fix that solves it', () => {
  test('running as root is fatal', async () => {
    const h = goodHost();
    h.uid = 0;
    h.username = 'root';
    h.files.set('/etc/subuid', 'root:100000:65536\n');
    h.files.set('/etc/subgid', 'root:100000:65536\n');
    h.stats.set('/run/user/0', { mode: 0o040700, uid: 0, isCharacterDevice: false, isDirectory: true });
    const results = await check(h, { xdgRuntimeDir: '/run/user/0' });
    const r = byName(results, 'not root');
    assert.equal(r.ok, false);
    assert.deepEqual(fatalNames(results), ['not root']);
    assert.match(formatReport(results), /FAIL {2}not root/);
  });

  test('no subuid entry: the usermod fix picks a range past every other user', async () => {
    const h = goodHost();
    h.files.set('/etc/subuid', 'bob:100000:65536\ncarol:165536:65536\ndave:500000:100000\n');
    const results = await check(h);
    const r = byName(results, '/etc/subuid');
    assert.equal(r.ok, false);
    assert.ok(fatalNames(results).includes('/etc/subuid'));
    assert.match(r.detail, /no range for alice/);
    const [first, last] = rangeOfFix(r.fix, '--add-subuids');
    assert.equal(last - first + 1, 65536);
    assert.equal(first, 600000);
    for (const [start, count] of [[100000, 65536], [165536, 65536], [500000, 100000]] as const) {
      const overlaps: boolean = first < start + count && start <= last;
      assert.equal(overlaps, false, `fix range ${first}-${last} overlaps ${start}+${count}`);
    }
    // The subgid file is fine and is not touched by the fix.
    assert.equal(byName(results, '/etc/subgid').ok, true);
    assert.ok(formatReport(results).includes(`  sudo usermod --add-subuids ${first}-${last} alice\n`));
  });

  test('no /etc/subgid at all: the fix uses --add-subgids from 100000', async () => {
    const h = goodHost();
    h.files.delete('/etc/subgid');
    const r = byName(await check(h), '/etc/subgid');
    assert.equal(r.ok, false);
    assert.deepEqual(rangeOfFix(r.fix, '--add-subgids'), [100000, 165535]);
  });

  test('a range smaller than 65536 ids is fatal and says how many there are', async () => {
    const h = goodHost();
    h.files.set('/etc/subuid', `${user}:100000:1000\nbob:101000:65536\n`);
    const results = await check(h);
    const r = byName(results, '/etc/subuid');
    assert.equal(r.ok, false);
    assert.ok(fatalNames(results).includes('/etc/subuid'));
    assert.match(r.detail, /only 1000 ids; 65536 are needed/);
    const [first] = rangeOfFix(r.fix, '--add-subuids');
    assert.ok(first >= 101000 + 65536, `fix starts at ${first}, inside bob's range`);
  });

  test('/dev/net/tun not readable and writable: chmod fix with the mode shown', async () => {
    const h = goodHost();
    h.stats.set('/dev/net/tun', { mode: 0o020600, uid: 0, isCharacterDevice: true, isDirectory: false });
    h.readWritable.delete('/dev/net/tun');
    const results = await check(h);
    const r = byName(results, '/dev/net/tun');
    assert.equal(r.ok, false);
    assert.equal(r.fix, 'sudo chmod 0666 /dev/net/tun');
    assert.match(r.detail, /mode 600/);
    assert.deepEqual(fatalNames(results), ['/dev/net/tun']);
    assert.ok(formatReport(results).includes('\n  sudo chmod 0666 /dev/net/tun\n'));
  });

  test('missing /dev/net/tun: modprobe fix', async () => {
    const h = goodHost();
    h.stats.delete('/dev/net/tun');
    const r = byName(await check(h), '/dev/net/tun');
    assert.equal(r.ok, false);
    assert.match(r.fix ?? '', /^sudo modprobe tun\b/);
  });

  test('/dev/net/tun that is a regular file counts as missing', async () => {
    const h = goodHost();
    h.stats.set('/dev/net/tun', { mode: 0o100666, uid: 0, isCharacterDevice: false, isDirectory: false });
    const r = byName(await check(h), '/dev/net/tun');
    assert.equal(r.ok, false);
    assert.match(r.fix ?? '', /modprobe tun/);
  });

  test('rootlesskit and slirp4netns missing: one merged apt-get line', async () => {
    const h = goodHost();
    const results = await check(h, { tools: { ...tools(), rootlesskit: undefined, slirp4netns: undefined } });
    assert.deepEqual(fatalNames(results).sort(), ['rootlesskit', 'slirp4netns']);
    assert.match(byName(results, 'rootlesskit').detail, /rootlesskit not found/);
    const report = formatReport(results);
    const aptLines = report.split('\n').filter((l) => l.trim().startsWith('sudo apt-get install'));
    assert.deepEqual(aptLines, ['  sudo apt-get install -y rootlesskit slirp4netns']);
    assert.match(report, /2 prerequisite\(s\) missing/);
  });

  test('newuidmap and newgidmap missing: uidmap is installed once', async () => {
    const results = await check(goodHost(), { tools: { ...tools(), newuidmap: undefined, newgidmap: undefined } });
    assert.deepEqual(fatalNames(results).sort(), ['newgidmap', 'newuidmap']);
    const report = formatReport(results);
    const block = report.slice(report.indexOf('prerequisite(s) missing'));
    assert.deepEqual(
      block.split('\n').filter((l) => l.startsWith('  ')),
      ['  sudo apt-get install -y uidmap'],
    );
  });

  test('a tool path given but not executable is named in the detail', async () => {
    const h = goodHost();
    h.executables.delete('/usr/sbin/runc');
    const r = byName(await check(h), 'runc');
    assert.equal(r.ok, false);
    assert.match(r.detail, /runc not found at \/usr\/sbin\/runc/);
    assert.equal(r.fix, 'sudo apt-get install -y runc');
  });

  test('newuidmap not setuid root is fatal with a chmod u+s fix', async () => {
    const h = goodHost();
    h.stats.set('/usr/bin/newuidmap', { mode: 0o100755, uid: 0, isCharacterDevice: false, isDirectory: false });
    const results = await check(h);
    const r = byName(results, 'newuidmap');
    assert.equal(r.ok, false);
    assert.deepEqual(fatalNames(results), ['newuidmap']);
    assert.match(r.detail, /neither setuid root nor has cap_setuid/);
    assert.equal(r.fix, 'sudo chmod u+s /usr/bin/newuidmap');
    const report = formatReport(results);
    assert.ok(report.includes('\n  sudo chmod u+s /usr/bin/newuidmap\n'));
    assert.doesNotMatch(report, /apt-get/);
  });

  test('newuidmap without setuid but with cap_setuid file capabilities is fine', async () => {
    const h = goodHost();
    h.stats.set('/usr/bin/newuidmap', { mode: 0o100755, uid: 0, isCharacterDevice: false, isDirectory: false });
    h.caps.set('/usr/bin/newuidmap', 'cap_setuid=ep');
    const results = await check(h);
    assert.deepEqual(fatalNames(results), []);
    assert.match(byName(results, 'newuidmap').detail, /cap_setuid=ep/);
  });

  test('newuidmap without setuid whose capabilities cannot be read is a warning, not fatal', async () => {
    const h = goodHost();
    h.stats.set('/usr/bin/newuidmap', { mode: 0o100755, uid: 0, isCharacterDevice: false, isDirectory: false });
    h.caps.set('/usr/bin/newuidmap', 'unknown');
    const results = await check(h);
    assert.deepEqual(fatalNames(results), []);
    const r = byName(results, 'newuidmap');
    assert.equal(r.ok, false);
    assert.equal(r.severity, 'warn');
    assert.match(r.detail, /getcap missing/);
  });

  test('a malformed /etc/subuid line grants nothing and does not break the suggested range', async () => {
    const h = goodHost();
    h.files.set('/etc/subuid', 'bob:abc:65536\ncarol:200000:65536\n');
    const r = byName(await check(h), '/etc/subuid');
    assert.equal(r.ok, false);
    assert.equal(r.fix, `sudo usermod --add-subuids 265536-331071 ${user}`);
  });

  test('newgidmap setuid but owned by a user is not setuid root', async () => {
    const h = goodHost();
    h.stats.set('/usr/bin/newgidmap', { mode: 0o104755, uid: 1000, isCharacterDevice: false, isDirectory: false });
    assert.deepEqual(fatalNames(await check(h)), ['newgidmap']);
  });

  test('a missing CNI plugin is named', async () => {
    const h = goodHost();
    h.executables.delete(`${cniBinDir}/portmap`);
    const results = await check(h);
    const r = byName(results, 'CNI plugins');
    assert.equal(r.ok, false);
    assert.match(r.detail, /missing in \/usr\/lib\/cni: portmap$/);
    assert.deepEqual(fatalNames(results), ['CNI plugins']);
    assert.ok(formatReport(results).includes('sudo apt-get install -y containernetworking-plugins'));
  });

  test('CNI plugins and tools missing share one apt-get line', async () => {
    const h = goodHost();
    h.executables.delete(`${cniBinDir}/bridge`);
    const results = await check(h, { tools: { ...tools(), conmon: undefined } });
    const aptLines = formatReport(results)
      .split('\n')
      .filter((l) => l.includes('apt-get') && !l.includes('fix:'));
    assert.deepEqual(aptLines, ['  sudo apt-get install -y conmon containernetworking-plugins']);
  });

  test('XDG_RUNTIME_DIR undefined is fatal with an install -d fix', async () => {
    const results = await check(goodHost(), { xdgRuntimeDir: undefined });
    const r = byName(results, 'XDG_RUNTIME_DIR');
    assert.equal(r.ok, false);
    assert.deepEqual(fatalNames(results), ['XDG_RUNTIME_DIR']);
    assert.match(r.detail, /not set/);
    assert.match(r.fix ?? '', /^sudo install -d -m 0700 -o alice .* \/run\/user\/1000 && export XDG_RUNTIME_DIR=\/run\/user\/1000$/);
  });

  test('XDG_RUNTIME_DIR not owned by the user is fatal', async () => {
    const h = goodHost();
    h.stats.set(runtimeDir, { mode: 0o040700, uid: 0, isCharacterDevice: false, isDirectory: true });
    const r = byName(await check(h), 'XDG_RUNTIME_DIR');
    assert.equal(r.ok, false);
    assert.equal(r.severity, 'fatal');
    assert.match(r.detail, /not owned by alice/);
    assert.match(r.fix ?? '', /install -d -m 0700 -o alice/);
  });

  test('XDG_RUNTIME_DIR with mode 0755 is fatal with a chmod fix', async () => {
    const h = goodHost();
    h.stats.set(runtimeDir, { mode: 0o040755, uid, isCharacterDevice: false, isDirectory: true });
    const results = await check(h);
    const r = byName(results, 'XDG_RUNTIME_DIR');
    assert.equal(r.ok, false);
    assert.deepEqual(fatalNames(results), ['XDG_RUNTIME_DIR']);
    assert.match(r.detail, /mode 755/);
    assert.equal(r.fix, `chmod 0700 ${runtimeDir}`);
    assert.ok(formatReport(results).includes(`\n  chmod 0700 ${runtimeDir}\n`));
  });

  test('XDG_RUNTIME_DIR that does not exist is fatal', async () => {
    const r = byName(await check(goodHost(), { xdgRuntimeDir: '/run/user/4242' }), 'XDG_RUNTIME_DIR');
    assert.equal(r.ok, false);
    assert.match(r.detail, /\/run\/user\/4242 does not exist/);
  });

  test('user namespaces that do not work are fatal with the error shown', async () => {
    const h = goodHost();
    h.userNamespaceError = 'unshare: write failed /proc/self/uid_map: Operation not permitted';
    const results = await check(h);
    const r = byName(results, 'user namespaces');
    assert.deepEqual(fatalNames(results), ['user namespaces']);
    assert.match(r.detail, /Operation not permitted/);
    assert.match(r.fix ?? '', /sysctl/);
  });

  test('Node.js older than 20 is fatal', async () => {
    const h = goodHost();
    h.nodeVersion = 'v18.19.0';
    const results = await check(h);
    assert.deepEqual(fatalNames(results), ['Node.js']);
    assert.match(byName(results, 'Node.js').detail, /too old/);
  });

  test('a cgroup warning is a warning, not fatal', async () => {
    const results = await check(goodHost(), { cgroupWarning: 'cpu and memory controllers are not delegated' });
    const r = byName(results, 'cgroup limits');
    assert.equal(r.ok, false);
    assert.equal(r.severity, 'warn');
    assert.deepEqual(fatalProblems(results), []);
    const report = formatReport(results);
    assert.match(report, /^warn {2}cgroup limits: cpu and memory controllers are not delegated$/m);
    assert.match(report, /All prerequisites are met/);
  });

  test('several problems: the report counts them and lists every fix once', async () => {
    const h = goodHost();
    h.files.set('/etc/subuid', '');
    h.files.set('/etc/subgid', '');
    h.stats.delete('/dev/net/tun');
    const results = await check(h, { xdgRuntimeDir: undefined, tools: { ...tools(), rootlesskit: undefined } });
    const bad = fatalProblems(results);
    assert.deepEqual(bad.map((r) => r.name).sort(), ['/dev/net/tun', '/etc/subgid', '/etc/subuid', 'XDG_RUNTIME_DIR', 'rootlesskit']);
    const report = formatReport(results);
    assert.match(report, /5 prerequisite\(s\) missing/);
    const block = report.slice(report.indexOf('prerequisite(s) missing'));
    assert.equal(block.split('\n').filter((l) => l.startsWith('  ')).length, 5);
    assert.doesNotMatch(report, /All prerequisites are met/);
  });
});
