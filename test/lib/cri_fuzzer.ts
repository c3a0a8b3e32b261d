import { join } from 'node:path';

import protobuf from 'protobufjs';
import type { Enum, FieldBase, MapField, Type } from 'protobufjs';

// The CRI fuzz's generator (test/integration/cri_fuzz.test.ts): request
// messages of any api.proto type from a seeded PRNG — hostile strings, numbers
// out of range, unknown enum values, known and made-up ids —, the bytes of a
// message mutated, and garbage. It keeps the fuzz from doing real harm: host
// paths only under the test node's folder, host ports only 0 or out of range,
// pulls only from the test registry.

/** mulberry32: small, seedable, good enough to pick test inputs. */
export function prng(s: number): () => number {
  let a = s >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface Known {
  podId: string;
  containerId: string;
  imageId: string;
  imageRef: string;
  registry: string;
  /** A folder of the test node's own: the only absolute host paths the fuzz names. */
  safeDir: string;
  podConfig?: object;
  /** Ids of pods and containers the fuzz's own calls made. */
  pods: string[];
  containers: string[];
}

export class Fuzzer {
  constructor(
    readonly rand: () => number,
    readonly known: () => Known,
  ) {}

  int(n: number): number {
    return Math.floor(this.rand() * n);
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
  chance(p: number): boolean {
    return this.rand() < p;
  }

  word(): string {
    const chars = 'abcdefghijklmnopqrstuvwxyz0123456789-';
    const n = 1 + this.int(12);
    let s = this.pick([...'abcdefghijklmnopqrstuvwxyz']);
    for (let i = 1; i < n; i++) s += this.pick([...chars]);
    return s.replace(/-+$/, '') || 'x';
  }

  hostile(): string {
    const k = this.known();
    return this.pick([
      '',
      '}',
      '{',
      '"',
      '"}',
      '{"data": 1}',
      '\0',
      `a\0b`,
      '\n',
      'a\nb',
      'x\nnameserver 6.6.6.6',
      ';',
      'a;IP=10.88.200.200',
      'K8S_POD_NAME=x;IP=1.2.3.4',
      '../',
      '../../../../../../etc/passwd',
      '/..',
      '..',
      '.',
      '/',
      'a/b',
      '\\',
      '$(id)',
      '`id`',
      '%s%n%x',
      "'",
      ' ',
      '\t',
      'ü',
      '☃',
      '😀',
      '\u202e',
      '\ud800',
      '\uffff',
      'x'.repeat(256),
      'y'.repeat(65536),
      'z'.repeat(1 << 20),
      '-1',
      '0',
      'NaN',
      'null',
      k.podId,
      k.containerId,
      k.podId.slice(0, 12),
      k.containerId.slice(0, 12),
      k.imageId,
      k.imageRef,
      this.madeUpId(),
      this.word(),
      this.word(),
    ]);
  }

  madeUpId(): string {
    let s = '';
    for (let i = 0; i < 64; i++) s += '0123456789abcdef'[this.int(16)];
    return s;
  }

  string(field: string): string {
    const k = this.known();
    const f = field.toLowerCase();
    const r = this.rand();
    if (/(^|_)id$|^podsandboxid$|^containerid$|sandboxid|targetid/.test(f)) {
      if (r < 0.45) return this.pick([k.podId, k.containerId, ...k.pods.slice(-5), ...k.containers.slice(-5)]);
      if (r < 0.6) return this.madeUpId();
    }
    // Host paths only inside the test node's own folder (or not absolute at all): the fuzz must not make folders or write logs elsewhere.
    if (/^(hostpath|logdirectory|containerpath|location|localhostref)$/.test(f.replace(/_/g, ''))) {
      if (f.replace(/_/g, '') === 'containerpath' && r < 0.3) return `/${this.word()}`;
      // Never out of it: no '..' in what is joined to it.
      return r < 0.6 ? join(k.safeDir, this.word(), this.chance(0.5) ? this.hostile().replace(/\.\./g, '') : '') : this.hostile().replace(/^\/+/, '');
    }
    if (f === 'image' || f === 'userspecifiedimage') {
      if (r < 0.5) return this.pick([k.imageRef, k.imageId, k.imageId.replace(/^sha256:/, '')]);
    }
    if (/name|namespace|uid|hostname/.test(f) && r < 0.4) return this.word();
    return this.hostile();
  }

  number(type: string): number | string {
    const r = this.rand();
    if (r < 0.3) return this.int(100);
    const common: Array<number | string> = [0, 1, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 32 - 1, 65535, 65536, 1e9];
    if (/64/.test(type)) common.push('9223372036854775807', '-9223372036854775808', '18446744073709551615', String(2 ** 53 + 1));
    if (type === 'double' || type === 'float') common.push(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 1e308, 1.5);
    return this.pick(common);
  }

  /** A plain object for `type`, its fields by protobufjs name. */
  message(type: Type, depth: number): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    const p = depth === 0 ? 0.7 : depth > 3 ? 0.1 : 0.45;
    for (const f of type.fieldsArray as FieldBase[]) {
      if (!this.chance(p)) continue;
      const oneof = (f as FieldBase & { partOf?: { oneof: string[] } }).partOf;
      if (oneof && Object.keys(out).some((k) => oneof.oneof.includes(k))) continue;
      const v = this.field(type, f, depth);
      if (v !== undefined) out[f.name] = v;
    }
    return out;
  }

  field(parent: Type, f: FieldBase, depth: number): unknown {
    if (f instanceof protobuf.MapField) {
      const m: MapField = f;
      const o: Record<string, unknown> = {};
      const n = this.int(4);
      for (let i = 0; i < n; i++) o[m.keyType === 'string' ? this.hostile().slice(0, 300) : String(this.int(100))] = this.scalarOrMessage(parent, m, m.type, depth);
      return o;
    }
    if (f.repeated) {
      const n = this.chance(0.1) ? 20 : this.int(4);
      return Array.from({ length: n }, () => this.scalarOrMessage(parent, f, f.type, depth));
    }
    return this.scalarOrMessage(parent, f, f.type, depth);
  }

  scalarOrMessage(parent: Type, f: FieldBase, typeName: string, depth: number): unknown {
    switch (typeName) {
      case 'string':
        return this.portSafe(parent, f) ?? this.string(f.name);
      case 'bool':
        return this.chance(0.5);
      case 'bytes':
        return Buffer.from(Array.from({ length: this.int(64) }, () => this.int(256)));
      case 'int32':
      case 'sint32':
      case 'sfixed32':
      case 'uint32':
      case 'fixed32':
      case 'int64':
      case 'sint64':
      case 'sfixed64':
      case 'uint64':
      case 'fixed64':
      case 'double':
      case 'float':
        return this.portSafe(parent, f) ?? this.number(typeName);
      default: {
        const t = f.resolvedType;
        if (t instanceof protobuf.Enum) return this.enumValue(t);
        if (t && depth < 6) return this.message(t as Type, depth + 1);
        return undefined;
      }
    }
  }

  enumValue(e: Enum): string | number {
    const names = Object.keys(e.values);
    return this.chance(0.75) ? this.pick(names) : this.pick([-1, 99, 2 ** 31 - 1, names.length]);
  }

  /** Host ports the fuzz must not open on the test machine: only 0 or out of range. */
  portSafe(parent: Type, f: FieldBase): number | undefined {
    if (parent.name === 'PortMapping' && f.name === 'hostPort') return this.pick([0, 0, -1, 65536, 2 ** 31 - 1, -(2 ** 31)]);
    return undefined;
  }

  /** PullImage reaches only the test registry: any other name would make the runtime go to the Internet. */
  guard(method: string, msg: Record<string, unknown>): void {
    if (method !== 'PullImage') return;
    const k = this.known();
    const spec = (msg.image ??= {}) as Record<string, unknown>;
    const tail = this.chance(0.3) ? 'usernode/busybox:latest' : this.chance(0.5) ? `${this.word()}:${this.word()}` : this.hostile().slice(0, 300);
    spec.image = `${k.registry}/${tail}`;
  }
}

/** A message's bytes with a few flipped, cut short, or a length made up. */
export function mutate(f: Fuzzer, b: Uint8Array): Buffer {
  const out = Buffer.from(b);
  if (out.length === 0) return Buffer.from([f.int(256)]);
  const kind = f.int(3);
  if (kind === 0) {
    for (let i = 0; i < 1 + f.int(4); i++) out[f.int(out.length)] = f.int(256);
    return out;
  }
  if (kind === 1) return out.subarray(0, f.int(out.length));
  return Buffer.concat([out, Buffer.from([0x0a, 0xff, 0xff, 0xff, 0x0f])]);
}

export function garbage(f: Fuzzer): Buffer {
  const n = f.pick([0, 1, 2, 7, 64, 1024, 70000]);
  return Buffer.from(Array.from({ length: n }, () => f.int(256)));
}


const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v) && !Buffer.isBuffer(v);

/** `base` (a request that would work) with a few of `random`'s values put in: each leaf with probability `p`. Deep paths are reached this way. */
export function blend(f: Fuzzer, base: unknown, random: unknown, p: number): unknown {
  if (!isObject(base) || !isObject(random)) return f.chance(p) ? random : base;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(random)) {
    if (k in base) out[k] = blend(f, base[k], v, p);
    else if (f.chance(p)) out[k] = v;
  }
  return out;
}

/** Requests that pass the first checks, for the RPCs whose interesting work lies behind them. */
export function baseRequest(f: Fuzzer, method: string): Record<string, unknown> | undefined {
  const k = f.known();
  const w = f.word();
  const podId = f.pick([k.podId, ...k.pods.slice(-5)]);
  const containerId = f.pick([k.containerId, ...k.containers.slice(-5)]);
  switch (method) {
    case 'RunPodSandbox':
      return { config: { metadata: { name: `fz-${w}`, namespace: 'fuzz', uid: `uid-${f.word()}`, attempt: 0 }, hostname: w, logDirectory: join(k.safeDir, 'logs', w), linux: {} } };
    case 'CreateContainer':
      return {
        podSandboxId: podId,
        config: {
          metadata: { name: `c-${w}`, attempt: 0 },
          image: { image: k.imageRef },
          command: f.pick([['sh', '-c', 'exit 0'], ['sleep', '2'], ['/no}such'], ['true'], ['sh', '-c', 'echo "{\"data\": 1}"; exit 3']]),
          logPath: `${w}.log`,
          linux: {},
        },
        sandboxConfig: k.podConfig ?? {},
      };
    case 'StartContainer':
    case 'StopContainer':
    case 'RemoveContainer':
    case 'ContainerStatus':
    case 'ContainerStats':
    case 'ReopenContainerLog':
      return { containerId: f.chance(0.7) ? f.pick([...k.containers.slice(-5), containerId]) : containerId, ...(method === 'StopContainer' ? { timeout: f.pick([0, 1, 2]) } : {}) };
    case 'ExecSync':
      return { containerId: k.containerId, cmd: f.pick([['true'], ['sh', '-c', 'echo out; echo err >&2'], ['false'], ['/no}such'], ['cat', '/etc/hostname']]), timeout: f.pick([0, 1, 5]) };
    case 'Exec':
    case 'Attach':
      return { containerId: k.containerId, cmd: ['true'], stdout: true };
    case 'UpdateContainerResources':
      return { containerId: k.containerId, linux: { cpuShares: 2, memoryLimitInBytes: 64 * 1024 * 1024 } };
    case 'PodSandboxStatus':
    case 'StopPodSandbox':
    case 'RemovePodSandbox':
    case 'PodSandboxStats':
    case 'PortForward':
    case 'UpdatePodSandboxResources':
      return { podSandboxId: f.chance(0.7) && k.pods.length > 0 ? f.pick(k.pods.slice(-5)) : podId, ...(method === 'PortForward' ? { port: [80] } : {}) };
    default:
      return undefined;
  }
}
