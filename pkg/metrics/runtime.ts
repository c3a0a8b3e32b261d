import { Counter, Gauge, type Registry } from 'prom-client';

// What only a rootless runtime knows, and the runtime's pods and containers by
// state. Every value is read when Prometheus scrapes, from memory or /proc, or
// from a cache refreshed with a deadline: a scrape never waits on anything the
// CRI handlers wait on, and a slow rootlesskit API costs a stale value, not a
// stuck scrape. Labels are bounded sets (state, limit, protocol, snapshotter).

/** Limits a rootless node may be unable to enforce (see the runtime's "resource limits will not be enforced"). */
export const limitKinds = ['cpu', 'memory', 'pids', 'hugepages'] as const;
export type LimitKind = (typeof limitKinds)[number];

// CRI states as label values the way kubelet spells container_state: SANDBOX_READY → ready.
export const sandboxStates = ['ready', 'notready'] as const;
export const containerStates = ['created', 'running', 'exited', 'unknown'] as const;
const stateLabel = (criState: string): string => criState.replace(/^(SANDBOX|CONTAINER)_/, '').toLowerCase();

export interface RuntimeFacts {
  /** The snapshotter images are unpacked with (overlayfs, copy). */
  snapshotter: string;
  /** The limits this host cannot enforce on containers. */
  unenforced: readonly LimitKind[];
  /** The node namespace's uplink (slirp4netns' tap device) counters; undefined when unreadable. */
  uplink(): Promise<{ rxBytes: bigint; txBytes: bigint } | undefined>;
  /** The rootlesskit port forwards active now. May be slow or fail: it is cached. */
  portForwards(): Promise<ReadonlyArray<{ protocol: string }>>;
  /** The runtime's pod sandboxes and containers, from its in-memory stores. */
  sandboxes(): ReadonlyArray<{ state: string }>;
  containers(): ReadonlyArray<{ state: string }>;
  /** Records that did not parse at start and were moved aside (pkg/store/json_records.ts). */
  recordsMovedAside?(): number;
}

/** How long a scrape waits for a slow source before it serves the last value. */
export const collectDeadlineMs = 500;

export function runtimeMetrics(registry: Registry, f: RuntimeFacts, o: { deadlineMs?: number } = {}): void {
  const deadlineMs = o.deadlineMs ?? collectDeadlineMs;
  const info = new Gauge({ name: 'usernode_snapshotter_info', help: 'The snapshotter the runtime unpacks images with; always 1.', labelNames: ['snapshotter'], registers: [registry] });
  info.set({ snapshotter: f.snapshotter }, 1);

  const unenforced = new Gauge({
    name: 'usernode_unenforced_limit',
    help: '1 for a container resource limit this host cannot enforce in rootless mode (no delegated cgroup v2 controller), 0 for one it enforces.',
    labelNames: ['limit'],
    registers: [registry],
  });
  for (const limit of limitKinds) unenforced.set({ limit }, f.unenforced.includes(limit) ? 1 : 0);

  const movedAside = f.recordsMovedAside;
  if (movedAside) {
    new Gauge({
      name: 'usernode_records_moved_aside',
      help: "Records (pods, containers, images) that did not parse at the runtime's start and were moved into the corrupt/ folder beside them; the log and `crictl info` name each.",
      registers: [registry],
      collect() {
        this.set(movedAside());
      },
    });
  }

  // Counters whose value the kernel keeps: each scrape sets them to what /proc says.
  const uplink = { rx: 0n, tx: 0n };
  const readUplink = async (): Promise<void> => {
    const c = await within(f.uplink(), deadlineMs);
    if (c) [uplink.rx, uplink.tx] = [c.rxBytes, c.txBytes];
  };
  const kernelCounter = (name: string, help: string, pick: () => bigint): void => {
    new Counter({
      name,
      help,
      registers: [registry],
      async collect() {
        await readUplink();
        this.reset();
        this.inc(Number(pick()));
      },
    });
  };
  kernelCounter('usernode_userspace_network_receive_bytes_total', 'Bytes the node namespace received through the userspace network (slirp4netns tap device).', () => uplink.rx);
  kernelCounter('usernode_userspace_network_transmit_bytes_total', 'Bytes the node namespace sent through the userspace network (slirp4netns tap device).', () => uplink.tx);

  let forwards: ReadonlyArray<{ protocol: string }> = [];
  new Gauge({
    name: 'usernode_port_forwards',
    help: 'Host ports forwarded into the node namespace by the rootlesskit port driver now (hostPorts and the streaming server), by protocol.',
    labelNames: ['protocol'],
    registers: [registry],
    async collect() {
      forwards = (await within(f.portForwards(), deadlineMs)) ?? forwards;
      this.reset();
      for (const protocol of ['tcp', 'udp']) this.set({ protocol }, forwards.filter((p) => p.protocol === protocol).length);
    },
  });

  new Gauge({
    name: 'usernode_pod_sandboxes',
    help: 'Pod sandboxes the runtime holds, by CRI state.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const state of sandboxStates) this.set({ state }, 0);
      for (const s of f.sandboxes()) this.inc({ state: stateLabel(s.state) === 'ready' ? 'ready' : 'notready' });
    },
  });
  new Gauge({
    name: 'usernode_containers',
    help: 'Containers the runtime holds, by CRI state.',
    labelNames: ['state'],
    registers: [registry],
    collect() {
      this.reset();
      for (const state of containerStates) this.set({ state }, 0);
      for (const c of f.containers()) {
        const state = stateLabel(c.state);
        this.inc({ state: (containerStates as readonly string[]).includes(state) ? state : 'unknown' });
      }
    },
  });
}

/** The promise's value, or undefined when it fails or takes longer than ms. */
export function within<T>(p: Promise<T>, ms: number): Promise<T | undefined> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(undefined), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      () => {
        clearTimeout(timer);
        resolve(undefined);
      },
    );
  });
}
