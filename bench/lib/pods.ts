import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

import type * as grpc from '@grpc/grpc-js';

import { criClients, type CriClients } from '../../proto/client.js';
import type { ContainerConfig } from '../../proto/generated/runtime/v1/ContainerConfig.js';
import type { PodSandboxConfig } from '../../proto/generated/runtime/v1/PodSandboxConfig.js';
import type { PodSandboxStatusResponse__Output } from '../../proto/generated/runtime/v1/PodSandboxStatusResponse.js';
import type { CriRuntime } from './runtime.js';
import type { BenchSession } from './session.js';

// Pods as kubelet makes them, through the project's own CRI client
// (proto/client.ts) — the same client, requests and timing for every runtime:
// RunPodSandbox, CreateContainer, StartContainer of one container running
// `sleep`, each call timed as the client sees it.

/** Client-side times of one pod start, in milliseconds. */
export interface PodStart {
  id: string;
  containerId: string;
  runMs: number;
  createMs: number;
  startMs: number;
  totalMs: number;
}

export interface PodOptions {
  /** A hostPort: host port → containerPort (TCP). */
  port?: { host: number; container: number };
}

type Callback<T> = (e: grpc.ServiceError | null, r?: T) => void;

function call<T>(what: string, f: (cb: Callback<T>) => unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    f((e, r) => {
      if (e) reject(new Error(`${what}: ${e.details || e.message}`));
      else if (r === undefined) reject(new Error(`${what}: empty response`));
      else resolve(r);
    });
  });
}

const now = (): number => Number(process.hrtime.bigint()) / 1e6;

export class PodClient {
  private readonly c: CriClients;
  private seq = 0;
  /** Pods this client started and has not removed. */
  readonly live = new Set<string>();

  constructor(
    readonly runtime: CriRuntime,
    /** Where pods' log folders go (made before the timed calls, as kubelet does). */
    private readonly logRoot: string,
    private readonly image: string,
    private readonly command: readonly string[] = ['sleep', '86400'],
  ) {
    this.c = criClients(runtime.socketPath);
  }

  close(): void {
    this.c.close();
  }

  async pull(image: string): Promise<void> {
    await call(`${this.runtime.name}: PullImage ${image}`, (cb) => this.c.image.PullImage({ image: { image } }, cb));
  }

  /** A fresh config (unique name and uid) and its log folder. */
  async config(prefix: string, o: PodOptions = {}): Promise<PodSandboxConfig> {
    const n = this.seq++;
    const name = `${prefix}-${n}`;
    const logDirectory = join(this.logRoot, this.runtime.name, name);
    await mkdir(logDirectory, { recursive: true });
    return {
      metadata: { name, namespace: 'bench', uid: `bench-${this.runtime.name}-${process.pid}-${name}`, attempt: 0 },
      hostname: name,
      logDirectory,
      linux: {},
      ...(o.port ? { portMappings: [{ protocol: 'TCP', containerPort: o.port.container, hostPort: o.port.host }] } : {}),
    };
  }

  /** RunPodSandbox + CreateContainer + StartContainer, timed call by call. */
  async start(config: PodSandboxConfig): Promise<PodStart> {
    const containerConfig: ContainerConfig = {
      metadata: { name: 'sleep', attempt: 0 },
      image: { image: this.image },
      command: [...this.command],
      logPath: 'sleep/0.log',
      linux: {},
    };
    const rt = this.runtime.name;
    const t0 = now();
    const { podSandboxId: id } = await call<{ podSandboxId: string }>(`${rt}: RunPodSandbox`, (cb) => this.c.runtime.RunPodSandbox({ config }, cb));
    this.live.add(id);
    const t1 = now();
    const { containerId } = await call<{ containerId: string }>(`${rt}: CreateContainer`, (cb) =>
      this.c.runtime.CreateContainer({ podSandboxId: id, config: containerConfig, sandboxConfig: config }, cb),
    );
    const t2 = now();
    await call(`${rt}: StartContainer`, (cb) => this.c.runtime.StartContainer({ containerId }, cb));
    const t3 = now();
    return { id, containerId, runMs: t1 - t0, createMs: t2 - t1, startMs: t3 - t2, totalMs: t3 - t0 };
  }

  /** StopPodSandbox + RemovePodSandbox (which stop and remove its container); milliseconds. */
  async remove(id: string): Promise<number> {
    const t0 = now();
    await call(`${this.runtime.name}: StopPodSandbox`, (cb) => this.c.runtime.StopPodSandbox({ podSandboxId: id }, cb));
    await call(`${this.runtime.name}: RemovePodSandbox`, (cb) => this.c.runtime.RemovePodSandbox({ podSandboxId: id }, cb));
    this.live.delete(id);
    return now() - t0;
  }

  /** Removes every pod still live, `concurrency` at a time; total milliseconds. */
  async removeAll(concurrency = 1): Promise<number> {
    const t0 = now();
    const ids = [...this.live];
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let id = ids.shift(); id; id = ids.shift()) await this.remove(id);
      }),
    );
    return now() - t0;
  }

  /** Containers the runtime reports RUNNING. */
  async runningContainers(): Promise<number> {
    const r = await call<{ containers: { state: string }[] }>(`${this.runtime.name}: ListContainers`, (cb) => this.c.runtime.ListContainers({}, cb));
    return r.containers.filter((c) => c.state === 'CONTAINER_RUNNING').length;
  }

  /**
   * The pod's address and network namespace file (inside the node namespace), from the verbose
   * PodSandboxStatus: usernode's info names `namespaces.net`, containerd's the runtime spec's network namespace.
   */
  async network(id: string): Promise<{ ip: string; netns: string }> {
    const r = await call<PodSandboxStatusResponse__Output>(`${this.runtime.name}: PodSandboxStatus`, (cb) =>
      this.c.runtime.PodSandboxStatus({ podSandboxId: id, verbose: true }, cb),
    );
    const info = JSON.parse(r.info.info ?? '{}') as { namespaces?: { net?: string }; runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } } };
    const netns = info.namespaces?.net ?? info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path;
    const ip = r.status?.network?.ip;
    if (!netns || !ip) throw new Error(`${this.runtime.name}: no network namespace or address in the status of pod ${id}: ${JSON.stringify(r.info).slice(0, 300)}`);
    return { ip, netns };
  }
}

/** A client for each of the session's runtimes; their pods are removed before the runtimes stop. */
export function podClients(session: BenchSession, image: string): Map<string, PodClient> {
  const clients = new Map(session.runtimes.map((rt) => [rt.name, new PodClient(rt, join(session.dir, 'pod-logs'), image)]));
  session.onStop(async () => {
    for (const c of clients.values()) {
      if (c.live.size > 0) await c.removeAll(4).catch((e: unknown) => session.odd.push(`${c.runtime.name}: removing its pods at the end: ${(e as Error).message}`));
      c.close();
    }
  });
  return clients;
}
