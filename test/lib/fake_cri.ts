import type { CriClients } from '../../proto/client.js';
import type { Prober, ProbeResult, ProbeSpec, ProbeTarget } from '../../pkg/node/prober.js';

// An in-memory CRI runtime for the pod worker's unit tests: sandboxes,
// containers with exit codes, images, on a clock the test moves. Every call
// is recorded so tests can check the order kubelet would keep. Containers
// only exit when the test says so (exit()) or when stopped.

export class FakeClock {
  constructor(public ms = Date.UTC(2026, 11, 1, 10, 0, 0)) {}
  now = (): number => this.ms;
  advance(ms: number): void {
    this.ms += ms;
  }
}

interface FakeSandbox {
  id: string;
  state: 'SANDBOX_READY' | 'SANDBOX_NOTREADY';
  metadata: { name: string; namespace: string; uid: string; attempt: number };
  labels: Record<string, string>;
  ip: string;
  createdAt: number;
}

export interface FakeContainer {
  id: string;
  sandboxId: string;
  state: 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED';
  metadata: { name: string; attempt: number };
  labels: Record<string, string>;
  config: Record<string, unknown>;
  startedAt: number;
  finishedAt: number;
  exitCode: number;
  reason: string;
}

export interface CriCall {
  method: string;
  req: Record<string, unknown>;
}

type Cb = (err: Error | null, res?: unknown) => void;

export class FakeCri {
  readonly sandboxes = new Map<string, FakeSandbox>();
  readonly containers = new Map<string, FakeContainer>();
  readonly images = new Set<string>();
  readonly calls: CriCall[] = [];
  /** The exit code a stopped container gets (SIGTERM handled: 143; killed: 137). */
  stopExitCode = 143;
  /** Errors the next call of a method answers with. */
  readonly failNext = new Map<string, Error>();
  /** Runs before StopContainer answers: what happens while a container takes its grace to stop. */
  beforeStop: (() => Promise<void>) | undefined;
  private next = 1;

  constructor(private readonly clock: FakeClock) {}

  /** The CriClients the worker takes. */
  clients(): CriClients {
    const handler = (method: string) => (req: Record<string, unknown>, cb: Cb) => {
      this.calls.push({ method, req });
      const err = this.failNext.get(method);
      if (err) {
        this.failNext.delete(method);
        return queueMicrotask(() => cb(err));
      }
      if (method === 'StopContainer' && this.beforeStop) {
        const hook = this.beforeStop;
        this.beforeStop = undefined;
        void hook().then(() => this.clients().runtime.StopContainer(req as never, cb as never));
        this.calls.pop();
        return;
      }
      let res: unknown;
      try {
        res = this.answer(method, req);
      } catch (e: unknown) {
        return queueMicrotask(() => cb(e as Error));
      }
      queueMicrotask(() => cb(null, res));
    };
    const proxy = new Proxy({}, { get: (_t, m: string) => handler(m) });
    return { runtime: proxy, image: proxy, close: () => {} } as unknown as CriClients;
  }

  /** The containers of a name, oldest attempt first. */
  named(name: string): FakeContainer[] {
    return [...this.containers.values()].filter((c) => c.metadata.name === name).sort((a, b) => a.metadata.attempt - b.metadata.attempt);
  }

  latest(name: string): FakeContainer | undefined {
    return this.named(name).at(-1);
  }

  /** The running container of that name exits with `code`. */
  exit(name: string, code: number, reason = code === 0 ? 'Completed' : 'Error'): void {
    const c = this.latest(name);
    if (!c || c.state !== 'CONTAINER_RUNNING') throw new Error(`no running container ${name}`);
    Object.assign(c, { state: 'CONTAINER_EXITED', exitCode: code, reason, finishedAt: this.clock.now() });
  }

  methods(): string[] {
    return this.calls.map((c) => c.method);
  }

  private ns = (ms: number): string => (ms === 0 ? '0' : String(BigInt(ms) * 1000000n));

  private answer(method: string, req: Record<string, unknown>): unknown {
    switch (method) {
      case 'ListPodSandbox': {
        const sel = ((req.filter as { labelSelector?: Record<string, string> } | undefined)?.labelSelector ?? {}) as Record<string, string>;
        return { items: [...this.sandboxes.values()].filter((s) => Object.entries(sel).every(([k, v]) => s.labels[k] === v)).map((s) => ({ id: s.id, state: s.state, createdAt: this.ns(s.createdAt), metadata: s.metadata, labels: s.labels })) };
      }
      case 'RunPodSandbox': {
        const config = req.config as { metadata: FakeSandbox['metadata']; labels: Record<string, string> };
        const id = `sb${this.next++}`;
        this.sandboxes.set(id, { id, state: 'SANDBOX_READY', metadata: config.metadata, labels: config.labels, ip: `10.88.0.${this.next}`, createdAt: this.clock.now() });
        return { podSandboxId: id };
      }
      case 'PodSandboxStatus': {
        const s = this.sandboxes.get(req.podSandboxId as string);
        if (!s) throw Object.assign(new Error('not found'), { code: 5 });
        return { status: { id: s.id, state: s.state, network: { ip: s.ip, additionalIps: [] } } };
      }
      case 'StopPodSandbox': {
        const s = this.sandboxes.get(req.podSandboxId as string);
        if (s) s.state = 'SANDBOX_NOTREADY';
        for (const c of this.containers.values()) if (c.sandboxId === req.podSandboxId && c.state !== 'CONTAINER_EXITED') Object.assign(c, { state: 'CONTAINER_EXITED', exitCode: 137, reason: 'Error', finishedAt: this.clock.now() });
        return {};
      }
      case 'RemovePodSandbox':
        this.sandboxes.delete(req.podSandboxId as string);
        for (const c of [...this.containers.values()]) if (c.sandboxId === req.podSandboxId) this.containers.delete(c.id);
        return {};
      case 'ListContainers': {
        const sb = (req.filter as { podSandboxId?: string } | undefined)?.podSandboxId;
        return { containers: [...this.containers.values()].filter((c) => !sb || c.sandboxId === sb).map((c) => ({ id: c.id, state: c.state, metadata: c.metadata, labels: c.labels })) };
      }
      case 'ContainerStatus': {
        const c = this.containers.get(req.containerId as string);
        if (!c) throw Object.assign(new Error('not found'), { code: 5 });
        return {
          status: {
            id: c.id,
            state: c.state,
            metadata: c.metadata,
            startedAt: this.ns(c.startedAt),
            finishedAt: this.ns(c.finishedAt),
            exitCode: c.exitCode,
            reason: c.reason,
            message: '',
            imageRef: `sha256:${String((c.config.image as { image: string }).image.length).padStart(64, '0')}`,
            logPath: (c.config.logPath as string | undefined) ?? '',
          },
        };
      }
      case 'CreateContainer': {
        const config = req.config as { metadata: FakeContainer['metadata']; labels: Record<string, string> } & Record<string, unknown>;
        const id = `c${this.next++}`;
        this.containers.set(id, { id, sandboxId: req.podSandboxId as string, state: 'CONTAINER_CREATED', metadata: config.metadata, labels: config.labels, config, startedAt: 0, finishedAt: 0, exitCode: 0, reason: '' });
        return { containerId: id };
      }
      case 'StartContainer': {
        const c = this.containers.get(req.containerId as string)!;
        Object.assign(c, { state: 'CONTAINER_RUNNING', startedAt: this.clock.now() });
        return {};
      }
      case 'StopContainer': {
        const c = this.containers.get(req.containerId as string);
        if (c && c.state !== 'CONTAINER_EXITED') Object.assign(c, { state: 'CONTAINER_EXITED', exitCode: this.stopExitCode, reason: 'Error', finishedAt: this.clock.now() });
        return {};
      }
      case 'RemoveContainer':
        this.containers.delete(req.containerId as string);
        return {};
      case 'ImageStatus': {
        const image = (req.image as { image: string }).image;
        return { image: this.images.has(image) ? { id: `sha256:${image}` } : null };
      }
      case 'PullImage':
        this.images.add((req.image as { image: string }).image);
        return { imageRef: 'sha256:x' };
      default:
        throw new Error(`the fake CRI has no ${method}`);
    }
  }
}

/** A prober whose answers the test decides, by the probe's exec command (joined by spaces). */
export class FakeProber implements Prober {
  readonly calls: Array<{ spec: ProbeSpec; target: ProbeTarget }> = [];
  readonly answers = new Map<string, 'success' | 'failure'>();

  run(spec: ProbeSpec, target: ProbeTarget): Promise<ProbeResult> {
    this.calls.push({ spec, target });
    const key = spec.kind === 'exec' ? spec.command.join(' ') : spec.kind;
    const result = this.answers.get(key) ?? 'success';
    return Promise.resolve({ result, output: result === 'failure' ? `${key}: nope` : '' });
  }

  ran(command: string): number {
    return this.calls.filter((c) => c.spec.kind === 'exec' && c.spec.command.join(' ') === command).length;
  }
}
