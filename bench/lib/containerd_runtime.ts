import { spawn } from 'node:child_process';
import { mkdir, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { writeConflist } from '../../pkg/netns/cni/conflist.js';
import { processesOf, run, sleep } from './proc.js';
import { CriRuntime, parseLogLine, type Leftovers, type PullAccount } from './runtime.js';

// Rootless containerd as the benchmark's reference: Debian's containerd 1.6
// with its CRI plugin and the overlayfs snapshotter, run by the calling
// (unprivileged) user under rootlesskit with the same network set-up as
// usernode's node namespace (slirp4netns, MTU 65520, no host loopback, /etc and
// /run copied up). Root, state and socket live in the benchmark's folder, which
// has the same path inside the namespace and out, so crictl reaches the socket
// from the host. The registry is made plain HTTP by a hosts.toml (config_path).
// Pods get the network usernode gives its pods: the same conflist (bridge with
// host-local IPAM on 10.88.0.0/16, MTU 65520, portmap; containerd adds loopback)
// and the same Debian plugins; the pause image is the test registry's.
// containerd's CRI does not talk to rootlesskit: a hostPort is forwarded from
// the host by the caller (rootlesskit's port API, as usernode does it).

export interface ContainerdOptions {
  dir: string;
  crictl: string;
  registry: string;
  logPath: string;
  containerd?: string;
  rootlesskit?: string;
  ctr?: string;
  /** sandbox_image: the pause image (a reference in the test registry; containerd 1.6 defaults to registry.k8s.io/pause:3.6). */
  sandboxImage?: string;
}

/** Debian's containernetworking-plugins. */
export const cniBinDir = '/usr/lib/cni';

export class ContainerdRuntime extends CriRuntime {
  readonly name = 'containerd';
  readonly endpoint: string;
  readonly socketPath: string;
  private readonly root: string;
  private readonly state: string;
  private readonly rkState: string;
  private readonly config: string;
  private exited: Promise<void> | undefined;
  private childPid: number | undefined;
  /** rootlesskit's helpers in the host's namespaces (slirp4netns): pid → command line. */
  private helpers = new Map<number, string>();

  constructor(private readonly o: ContainerdOptions) {
    super(o.crictl, join(o.dir, 'crictl.yaml'));
    this.root = join(o.dir, 'root');
    this.state = join(o.dir, 'run', 'containerd');
    this.socketPath = join(this.state, 'containerd.sock');
    this.rkState = join(o.dir, 'run', 'rootlesskit');
    this.config = join(o.dir, 'config.toml');
    this.endpoint = `unix://${this.socketPath}`;
  }

  private async writeConfig(): Promise<void> {
    const certs = join(this.o.dir, 'certs.d');
    await mkdir(join(certs, this.o.registry), { recursive: true });
    await writeFile(
      join(certs, this.o.registry, 'hosts.toml'),
      `server = "http://${this.o.registry}"\n\n[host."http://${this.o.registry}"]\n  capabilities = ["pull", "resolve"]\n`,
    );
    const netd = join(this.o.dir, 'cni', 'net.d');
    await writeConflist(netd, { networkName: 'containerd-bench', bridge: 'cni0', podCIDR: '10.88.0.0/16', mtu: 65520, ipamDataDir: join(this.o.dir, 'cni', 'ipam') });
    const cri = 'plugins."io.containerd.grpc.v1.cri"';
    await writeFile(
      this.config,
      [
        'version = 2',
        `root = "${this.root}"`,
        `state = "${this.state}"`,
        // Plugins that need root or hardware this host has not; they would only log errors.
        'disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]',
        '[grpc]',
        `  address = "${this.socketPath}"`,
        '[ttrpc]',
        `  address = "${this.socketPath}.ttrpc"`,
        '[debug]',
        // debug: "diff applied" and the fetch lines, for the timeline.
        '  level = "debug"',
        '[plugins."io.containerd.internal.v1.opt"]',
        `  path = "${join(this.o.dir, 'opt')}"`,
        `[${cri}]`,
        // Rootless: what containerd-rootless-setuptool.sh sets for the CRI plugin.
        '  disable_cgroup = true',
        '  disable_apparmor = true',
        '  restrict_oom_score_adj = true',
        ...(this.o.sandboxImage ? [`  sandbox_image = "${this.o.sandboxImage}"`] : []),
        `[${cri}.cni]`,
        `  bin_dir = "${cniBinDir}"`,
        `  conf_dir = "${netd}"`,
        `[${cri}.containerd]`,
        '  snapshotter = "overlayfs"',
        `[${cri}.registry]`,
        `  config_path = "${certs}"`,
        '',
      ].join('\n'),
    );
    await writeFile(this.crictlConfig, `runtime-endpoint: ${this.endpoint}\nimage-endpoint: ${this.endpoint}\ntimeout: 60\n`);
  }

  async start(): Promise<void> {
    await mkdir(join(this.o.dir, 'run'), { recursive: true, mode: 0o700 });
    await mkdir(this.root, { recursive: true, mode: 0o700 });
    await rm(this.rkState, { recursive: true, force: true });
    await this.writeConfig();
    const argv = [
      `--state-dir=${this.rkState}`,
      '--net=slirp4netns',
      '--mtu=65520',
      '--disable-host-loopback',
      '--slirp4netns-sandbox=auto',
      '--slirp4netns-seccomp=auto',
      '--copy-up=/etc',
      '--copy-up=/run',
      // What containerd-rootless.sh adds for the CRI plugin: CNI keeps its cache in /var/lib/cni.
      '--copy-up=/var/lib',
      '--propagation=rslave',
      '--port-driver=builtin',
      // As containerd-rootless.sh does: the copied-up folders hold links to the host's entries;
      // drop those containerd must own (the host's /run/netns is root's where the test bed made
      // a netns), then become containerd, so rootlesskit's child_pid is containerd.
      'sh',
      '-c',
      'rm -f /run/netns /run/containerd /var/lib/cni /var/lib/containerd && exec "$0" "$@"',
      this.o.containerd ?? 'containerd',
      '-c',
      this.config,
    ];
    const child = spawn(this.o.rootlesskit ?? 'rootlesskit', argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.child = child;
    this.captureLog(child, this.o.logPath);
    let gone = false;
    this.exited = new Promise((resolve) => child.on('exit', () => ((gone = true), resolve())));
    const deadline = Date.now() + 60000;
    for (;;) {
      if (gone) throw new Error(`rootless containerd exited before it served CRI:\n${this.logText}`);
      const r = await this.crictlRun(['version'], 5000);
      if (r.code === 0) break;
      if (Date.now() > deadline) throw new Error(`rootless containerd did not serve CRI within 60 s:\n${r.stderr}\n${this.logText}`);
      await sleep(100);
    }
    const childPid = Number((await readFile(join(this.rkState, 'child_pid'), 'utf8')).trim());
    this.childPid = childPid;
    this.userNs = await readlink(`/proc/${childPid}/ns/user`);
    for (const p of await processesOf(process.getuid!())) if (p.ppid === child.pid && p.pid !== childPid) this.helpers.set(p.pid, p.cmdline);
  }

  /** rootlesskit's child is containerd itself: its namespaces are the node namespace. */
  async nodeNamespace(): Promise<{ pid: number; portApiSocket: string }> {
    if (this.childPid === undefined) throw new Error('containerd is not running');
    return { pid: this.childPid, portApiSocket: join(this.rkState, 'api.sock') };
  }

  /** The snapshotter the CRI plugin uses (crictl info → config.containerd.snapshotter). */
  async snapshotter(): Promise<string> {
    const r = await this.crictlMust(['info']);
    const info = JSON.parse(r.stdout) as { config?: { containerd?: { snapshotter?: string } } };
    return info.config?.containerd?.snapshotter ?? 'unknown';
  }

  async leftovers(): Promise<Leftovers> {
    const list = async (d: string): Promise<string[]> => readdir(d).catch(() => []);
    const content = join(this.root, 'io.containerd.content.v1.content');
    const blobs = (await list(join(content, 'blobs', 'sha256'))).map((n) => `sha256:${n}`);
    blobs.push(...(await list(join(content, 'ingest'))).map((n) => `ingest ${n}`));
    // What the metadata store still lists, over the API, in CRI's namespace.
    const ctr = await run(this.o.ctr ?? 'ctr', ['--address', this.socketPath, '--namespace', 'k8s.io', 'content', 'ls', '--quiet'], { timeoutMs: 30000 });
    if (ctr.code !== 0) throw new Error(`ctr content ls failed: ${ctr.stderr}`);
    for (const d of ctr.stdout.split('\n').map((l) => l.trim())) if (d && !blobs.includes(d)) blobs.push(`${d} (metadata)`);
    const layers = (await list(join(this.root, 'io.containerd.snapshotter.v1.overlayfs', 'snapshots'))).map((n) => `snapshot ${n}`);
    return { blobs, layers };
  }

  account(ref: string, logOffset: number): PullAccount {
    let start: number | undefined;
    let serverMs: number | undefined;
    const timeline: PullAccount['timeline'] = [];
    for (const line of this.logText.slice(logOffset).split('\n')) {
      const l = parseLogLine(line);
      if (!l) continue;
      if (l.msg === `PullImage "${ref}"`) start = l.time;
      if (start === undefined) continue;
      const at = (l.time - start) / 1000;
      if (l.msg === 'diff applied') timeline.push({ at, what: `layer applied (${l.fields.size} B compressed, took ${l.fields.d})` });
      // At most max_concurrent_downloads (3) at once: a fetch starting means an earlier one ended.
      else if (l.msg === 'fetch' && l.fields.mediatype?.includes('layer')) timeline.push({ at, what: `layer fetch started (${l.fields.digest?.slice(0, 19)}, ${l.fields.size} B)` });
      else if (l.msg === 'image unpacked') timeline.push({ at, what: 'image unpacked' });
      else if (l.msg.startsWith(`PullImage "${ref}" returns`)) {
        serverMs = l.time - start;
        timeline.push({ at, what: 'image pulled' });
        break;
      }
    }
    return { serverMs, timeline };
  }

  async version(): Promise<string> {
    const r = await run(this.o.containerd ?? 'containerd', ['--version']);
    return r.stdout.trim();
  }

  /** SIGTERM to rootlesskit (which passes it on to containerd), then checks that nothing of its namespace runs. */
  async stop(): Promise<string[]> {
    const odd: string[] = [];
    if (this.child && this.exited) {
      this.child.kill('SIGTERM');
      const done = await Promise.race([this.exited.then(() => true), sleep(20000).then(() => false)]);
      if (!done) {
        odd.push(`rootlesskit (pid ${this.child.pid}) did not exit 20 s after SIGTERM; killed`);
        this.child.kill('SIGKILL');
        await this.exited;
      }
    }
    odd.push(...(await this.namespaceLeftovers("containerd's namespace after rootlesskit exited")));
    for (const p of await processesOf(process.getuid!())) {
      if (this.helpers.get(p.pid) === p.cmdline) {
        odd.push(`rootlesskit's helper outlived it: pid ${p.pid} ${p.cmdline}; killed`);
        try {
          process.kill(p.pid, 'SIGKILL');
        } catch {
          // gone
        }
      }
    }
    this.logFile?.end();
    return odd;
  }
}
