import { existsSync } from 'node:fs';
import { lstat, mkdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { alreadyExists, failedPrecondition } from '../../pkg/errdefs/errors.js';
import { agentVersion } from './version.js';

// `usernode install` / `usernode uninstall`: a systemd user unit that runs the
// agent (`usernode run` with the flags given to install), so the node survives
// logout and reboot — with lingering, which install tells the user how to enable,
// as dockerd-rootless-setuptool.sh install does for rootless docker.
//
// Why KillMode=process, not docker's mixed nor systemd's default control-group:
// the node namespace (rootlesskit's holder, slirp4netns) and the pods (conmon,
// their containers) must outlive the agent's own processes (DESIGN.md,
// lifetimes). Under the other modes, stopping or restarting the unit — and a
// crash before Restart=on-failure starts it again — kills every process of the
// unit's cgroup, pods included. With process, systemd signals the agent alone;
// its SIGTERM stops its own processes (node half, runtime half) and leaves the
// node namespace and pods running, and the next start adopts them, as
// `usernode run` after a SIGTERM does. So `systemctl --user stop usernode` stops
// the agent only (as stopping kubelet leaves containers running) and there is
// no ExecStop=usernode stop, which would end the pods on every restart:
// `usernode stop` is what stops everything.

export const unitName = 'usernode.service';

/** Where systemd's user manager finds units the user wrote: ${XDG_CONFIG_HOME:-~/.config}/systemd/user. */
export function unitDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'systemd', 'user');
}

/** One word of a systemd setting: quoted when needed, % escaped (specifiers) and, on a command line, $ (variables). */
export function systemdWord(s: string, commandLine = true): string {
  let escaped = s.replaceAll('%', '%%');
  if (commandLine) escaped = escaped.replaceAll('$', '$$$$');
  if (escaped !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(escaped)) return escaped;
  return `"${escaped.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

export interface UnitOptions {
  /** The node binary (absolute). */
  node: string;
  /** bin/usernode (absolute). */
  script: string;
  /** `usernode run`'s flags, file paths already absolute. */
  runArgs: readonly string[];
  /** Variables the agent needs from the installing shell: PATH (its tools), XDG_CONFIG_HOME and XDG_DATA_HOME when set. */
  environment: Readonly<Record<string, string>>;
}

export function unitText(o: UnitOptions): string {
  const exec = [o.node, o.script, 'run', ...o.runArgs].map((w) => systemdWord(w)).join(' ');
  const env = Object.entries(o.environment).map(([k, v]) => `Environment=${systemdWord(`${k}=${v}`, false)}`);
  return [
    `# usernode's systemd user unit, written by \`usernode install\` (usernode ${agentVersion}); \`usernode uninstall\` removes it.`,
    '# KillMode=process: stopping or restarting the unit signals the agent alone, which leaves the node',
    '# namespace and the pods running for the next start to adopt; `usernode stop` stops them too.',
    '[Unit]',
    'Description=usernode, a rootless Kubernetes node',
    'StartLimitIntervalSec=60',
    'StartLimitBurst=3',
    '',
    '[Service]',
    'Type=exec',
    `ExecStart=${exec}`,
    ...env,
    // The user's own cgroup v2 subtree: the agent moves itself to <cgroup>/agent and makes the containers' under <cgroup>/pods.
    'Delegate=yes',
    'KillMode=process',
    'Restart=on-failure',
    'RestartSec=2',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n');
}

/** The agent's entry point beside this module: dist/cmd/agent/ → bin/usernode. */
function usernodeScript(): string {
  return fileURLToPath(new URL('../../../bin/usernode', import.meta.url));
}

function lingering(user: string): boolean {
  return existsSync(join('/var/lib/systemd/linger', user));
}

export async function install(runArgs: readonly string[], o: { force: boolean; env: NodeJS.ProcessEnv }): Promise<number> {
  const environment: Record<string, string> = {};
  // The user manager's PATH is systemd's default: the tools (rootlesskit, slirp4netns, runc, conmon) are found on the installing shell's.
  if (o.env.PATH) environment.PATH = o.env.PATH;
  for (const k of ['XDG_CONFIG_HOME', 'XDG_DATA_HOME'] as const) if (o.env[k]) environment[k] = o.env[k]!;
  const text = unitText({ node: process.execPath, script: usernodeScript(), runArgs, environment });
  const dir = unitDir(o.env);
  const path = join(dir, unitName);
  const old = await readFile(path, 'utf8').catch((e: NodeJS.ErrnoException) => {
    if (e.code === 'ENOENT') return undefined;
    throw failedPrecondition(`cannot read ${path}: ${e.code ?? e.message}`, { field: path });
  });
  let what: string;
  if (old === text) {
    what = `${path} is installed already, unchanged`;
  } else {
    if (old !== undefined && !o.force) {
      throw alreadyExists(`${path} exists with other content (another usernode version, other flags, or edited by hand); \`usernode install --force …\` replaces it, \`usernode uninstall\` removes it`, { field: path });
    }
    try {
      await mkdir(dir, { recursive: true });
      const tmp = `${path}.${process.pid}.tmp`;
      await writeFile(tmp, text, { mode: 0o644 });
      await rename(tmp, path);
    } catch (e: unknown) {
      throw failedPrecondition(`cannot write ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, { field: path });
    }
    what = old === undefined ? `wrote ${path}` : `replaced ${path}`;
  }
  const user = userInfo().username;
  process.stdout.write(
    [
      what,
      '',
      'To start the node now and at every login:',
      '  systemctl --user daemon-reload',
      '  systemctl --user enable --now usernode',
      lingering(user)
        ? `Lingering is enabled for ${user}: the node keeps running after logout and starts at boot.`
        : `To keep it running after you log out and start it at boot, enable lingering:\n  loginctl enable-linger ${user}      (or, where polkit does not allow it: sudo loginctl enable-linger ${user})`,
      'Its log: journalctl --user -u usernode',
      'Stopping the unit stops the agent only; the pods keep running. `usernode stop` stops them too.',
      '',
    ].join('\n'),
  );
  return 0;
}

export async function uninstall(o: { env: NodeJS.ProcessEnv }): Promise<number> {
  const dir = unitDir(o.env);
  const path = join(dir, unitName);
  // `systemctl --user enable` links it from default.target.wants; a link left behind would dangle.
  const wants = join(dir, 'default.target.wants', unitName);
  const removed: string[] = [];
  for (const p of [wants, path]) {
    const st = await lstat(p).catch(() => undefined);
    if (!st) continue;
    await rm(p, { force: true }).catch((e: NodeJS.ErrnoException) => {
      throw failedPrecondition(`cannot remove ${p}: ${e.code ?? e.message}`, { field: p });
    });
    removed.push(p);
  }
  if (removed.length === 0) {
    process.stdout.write(`usernode is not installed as a systemd user unit (no ${path}); nothing to do\n`);
    return 0;
  }
  process.stdout.write(
    [
      ...removed.map((p) => `removed ${p}`),
      '',
      'If the unit was running: systemctl --user stop usernode && systemctl --user daemon-reload',
      'The pods and the node namespace keep running until `usernode stop`.',
      '',
    ].join('\n'),
  );
  await rmdir(dirname(wants)).catch(() => undefined); // only if empty
  return 0;
}
