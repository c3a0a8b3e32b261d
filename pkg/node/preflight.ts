// `usernode check`: every host prerequisite of a rootless node, each with the
// exact command that fixes it. `usernode run` runs the same checks and refuses
// to start on a fatal one, before anything is created.
//
// The host is reached through HostProbe so unit tests can play any host.

export interface HostProbe {
  uid: number;
  username: string;
  nodeVersion: string;
  readFile(path: string): Promise<string | undefined>;
  /** undefined when the path does not exist. */
  stat(path: string): Promise<{ mode: number; uid: number; isCharacterDevice: boolean; isDirectory: boolean } | undefined>;
  /** Can this user read and write the path? */
  canReadWrite(path: string): Promise<boolean>;
  isExecutable(path: string): Promise<boolean>;
  /** Does the file carry file capabilities (getcap)? undefined when that cannot be told. */
  fileCapabilities(path: string): Promise<string | undefined | 'unknown'>;
  /** Does an unprivileged `unshare --user` work? An error text when not. */
  userNamespaceError(): Promise<string | undefined>;
}

export interface ToolPaths {
  rootlesskit: string | undefined;
  slirp4netns: string | undefined;
  newuidmap: string | undefined;
  newgidmap: string | undefined;
  runc: string | undefined;
  conmon: string | undefined;
  /** The init of pods that share one process namespace (shareProcessNamespace): PID 1 that reaps. */
  catatonit: string | undefined;
  nsenter: string | undefined;
  iptables: string | undefined;
  cniBinDir: string;
}

export interface PreflightInput {
  tools: ToolPaths;
  /** The runtime folder the agent will use ($XDG_RUNTIME_DIR), or undefined when none could be chosen. */
  xdgRuntimeDir: string | undefined;
  /** Shown when cgroup limits cannot be enforced (a warning, not fatal). */
  cgroupWarning: string | undefined;
}

export type Severity = 'fatal' | 'warn';

export interface CheckResult {
  name: string;
  ok: boolean;
  severity: Severity;
  detail: string;
  /** A shell command that fixes it (run as root where it starts with sudo). */
  fix?: string;
  /** The Debian package that provides it, so fixes can be merged into one apt-get line. */
  debianPackage?: string;
}

const subidSize = 65536;

const toolPackages: ReadonlyArray<[keyof Omit<ToolPaths, 'cniBinDir'>, string]> = [
  ['rootlesskit', 'rootlesskit'],
  ['slirp4netns', 'slirp4netns'],
  ['newuidmap', 'uidmap'],
  ['newgidmap', 'uidmap'],
  ['runc', 'runc'],
  ['conmon', 'conmon'],
  ['catatonit', 'catatonit'],
  ['nsenter', 'util-linux'],
  ['iptables', 'iptables'],
];

export const cniPlugins = ['bridge', 'host-local', 'loopback', 'portmap'] as const;

export async function runPreflight(host: HostProbe, input: PreflightInput): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const user = host.username;

  out.push(
    host.uid === 0
      ? {
          name: 'not root',
          ok: false,
          severity: 'fatal',
          detail: 'usernode is rootless by design and refuses to run as root',
          fix: 'run usernode as an ordinary user (set the host up once with: sudo scripts/host-setup.sh USER)',
        }
      : { name: 'not root', ok: true, severity: 'fatal', detail: `running as ${user} (uid ${host.uid})` },
  );

  const major = Number(/^v?(\d+)/.exec(host.nodeVersion)?.[1] ?? 0);
  out.push({
    name: 'Node.js',
    ok: major >= 20,
    severity: 'fatal',
    detail: major >= 20 ? host.nodeVersion : `Node.js ${host.nodeVersion} is too old; usernode needs 20 or newer`,
    fix: 'sudo apt-get install -y nodejs (version 20 or newer)',
  });

  for (const file of ['/etc/subuid', '/etc/subgid'] as const) out.push(await subidCheck(host, file));

  for (const [tool, pkg] of toolPackages) {
    const path = input.tools[tool];
    const ok = path !== undefined && (await host.isExecutable(path));
    let detail = ok ? path! : `${tool} not found${path ? ` at ${path}` : ' (looked in /usr/local/sbin, /usr/local/bin, /usr/sbin, /usr/bin, /sbin, /bin and PATH)'}`;
    let fixed = ok;
    let severity: Severity = 'fatal';
    if (ok && (tool === 'newuidmap' || tool === 'newgidmap')) {
      // They must be setuid root, or carry file capabilities (cap_setuid /
      // cap_setgid, as some distributions ship them), to map a range.
      const st = await host.stat(path!);
      const setuid = st !== undefined && st.uid === 0 && (st.mode & 0o4000) !== 0;
      if (!setuid) {
        const caps = await host.fileCapabilities(path!);
        if (caps === 'unknown') {
          fixed = false;
          severity = 'warn';
          detail = `${path} is not setuid root and its file capabilities cannot be read (getcap missing); it may not map the subuid range`;
        } else if (caps === undefined || !/cap_set[ug]id/.test(caps)) {
          fixed = false;
          detail = `${path} is neither setuid root nor has cap_setuid/cap_setgid, so it cannot map the subuid range`;
        } else {
          detail = `${path} (${caps})`;
        }
      }
    }
    out.push({
      name: tool,
      ok: fixed,
      severity,
      detail,
      fix: fixed || ok ? `sudo chmod u+s ${path}` : `sudo apt-get install -y ${pkg}`,
      debianPackage: ok ? undefined : pkg,
    });
  }

  const missingPlugins: string[] = [];
  for (const p of cniPlugins) if (!(await host.isExecutable(`${input.tools.cniBinDir}/${p}`))) missingPlugins.push(p);
  out.push({
    name: 'CNI plugins',
    ok: missingPlugins.length === 0,
    severity: 'fatal',
    detail:
      missingPlugins.length === 0
        ? `${cniPlugins.join(', ')} in ${input.tools.cniBinDir}`
        : `missing in ${input.tools.cniBinDir}: ${missingPlugins.join(', ')}`,
    fix: 'sudo apt-get install -y containernetworking-plugins',
    debianPackage: 'containernetworking-plugins',
  });

  const tun = await host.stat('/dev/net/tun');
  if (!tun || !tun.isCharacterDevice) {
    out.push({
      name: '/dev/net/tun',
      ok: false,
      severity: 'fatal',
      detail: '/dev/net/tun does not exist (slirp4netns needs a TAP device)',
      fix: 'sudo modprobe tun && sudo chmod 0666 /dev/net/tun',
    });
  } else {
    const rw = await host.canReadWrite('/dev/net/tun');
    out.push({
      name: '/dev/net/tun',
      ok: rw,
      severity: 'fatal',
      detail: rw ? 'usable' : `/dev/net/tun (mode ${(tun.mode & 0o777).toString(8)}) is not readable and writable by ${user}`,
      fix: 'sudo chmod 0666 /dev/net/tun',
    });
  }

  const userns = await host.userNamespaceError();
  out.push({
    name: 'user namespaces',
    ok: userns === undefined,
    severity: 'fatal',
    detail: userns === undefined ? 'unprivileged user namespaces work' : `cannot create a user namespace: ${userns}`,
    fix: 'sudo sysctl -w user.max_user_namespaces=28633 kernel.unprivileged_userns_clone=1 kernel.apparmor_restrict_unprivileged_userns=0',
  });

  out.push(await runtimeDirCheck(host, input.xdgRuntimeDir));

  if (input.cgroupWarning) {
    out.push({ name: 'cgroup limits', ok: false, severity: 'warn', detail: input.cgroupWarning });
  }
  return out;
}

async function subidCheck(host: HostProbe, file: '/etc/subuid' | '/etc/subgid'): Promise<CheckResult> {
  const text = (await host.readFile(file)) ?? '';
  const entries = text
    .split('\n')
    .map((l) => l.trim().split(':'))
    .filter((f) => f.length === 3)
    .map(([owner, start, count]) => ({ owner: owner!, start: Number(start), count: Number(count) }))
    // A malformed line (not numbers) grants nothing and must not poison the free-range arithmetic.
    .filter((e) => Number.isSafeInteger(e.start) && Number.isSafeInteger(e.count) && e.start >= 0 && e.count > 0);
  const mine = entries.filter((e) => e.owner === host.username || e.owner === String(host.uid));
  const total = mine.reduce((n, e) => n + e.count, 0);
  // A free range past every existing one, so the fix never overlaps another user.
  const free = Math.max(100000, ...entries.map((e) => e.start + e.count));
  const flag = file === '/etc/subuid' ? '--add-subuids' : '--add-subgids';
  return {
    name: file,
    ok: total >= subidSize,
    severity: 'fatal',
    detail:
      total >= subidSize
        ? `${mine.map((e) => `${e.start}-${e.start + e.count - 1}`).join(', ')}`
        : mine.length === 0
          ? `no range for ${host.username} in ${file}`
          : `${file} gives ${host.username} only ${total} ids; ${subidSize} are needed`,
    fix: `sudo usermod ${flag} ${free}-${free + subidSize - 1} ${host.username}`,
  };
}

async function runtimeDirCheck(host: HostProbe, dir: string | undefined): Promise<CheckResult> {
  const want = `/run/user/${host.uid}`;
  const fix = `sudo install -d -m 0700 -o ${host.username} -g $(id -gn ${host.username}) ${want} && export XDG_RUNTIME_DIR=${want}`;
  if (dir === undefined) {
    return { name: 'XDG_RUNTIME_DIR', ok: false, severity: 'fatal', detail: `XDG_RUNTIME_DIR is not set and ${want} does not exist`, fix };
  }
  const st = await host.stat(dir);
  if (!st || !st.isDirectory) return { name: 'XDG_RUNTIME_DIR', ok: false, severity: 'fatal', detail: `${dir} does not exist`, fix };
  if (st.uid !== host.uid) return { name: 'XDG_RUNTIME_DIR', ok: false, severity: 'fatal', detail: `${dir} is not owned by ${host.username}`, fix };
  if ((st.mode & 0o077) !== 0) {
    return { name: 'XDG_RUNTIME_DIR', ok: false, severity: 'fatal', detail: `${dir} is open to other users (mode ${(st.mode & 0o777).toString(8)})`, fix: `chmod 0700 ${dir}` };
  }
  return { name: 'XDG_RUNTIME_DIR', ok: true, severity: 'fatal', detail: dir };
}

export function fatalProblems(results: readonly CheckResult[]): CheckResult[] {
  return results.filter((r) => !r.ok && r.severity === 'fatal');
}

/** The report `usernode check` prints: one line per check, then every fix in one block. */
export function formatReport(results: readonly CheckResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    const mark = r.ok ? 'ok  ' : r.severity === 'fatal' ? 'FAIL' : 'warn';
    lines.push(`${mark}  ${r.name}: ${r.detail}`);
    if (!r.ok && r.fix) lines.push(`      fix: ${r.fix}`);
  }
  const bad = fatalProblems(results);
  if (bad.length === 0) {
    lines.push('', 'All prerequisites are met.');
    return lines.join('\n') + '\n';
  }
  const pkgs = [...new Set(bad.flatMap((r) => (r.debianPackage ? [r.debianPackage] : [])))];
  const other = [...new Set(bad.filter((r) => !r.debianPackage && r.fix).map((r) => r.fix!))];
  lines.push('', `${bad.length} prerequisite(s) missing. To fix them:`);
  if (pkgs.length > 0) lines.push(`  sudo apt-get install -y ${pkgs.join(' ')}`);
  for (const f of other) lines.push(`  ${f}`);
  return lines.join('\n') + '\n';
}
