import type { ContainerRecord } from '../../pkg/sandbox/container_store.js';
import type { SandboxRecord } from '../../pkg/sandbox/sandbox_store.js';

// Records as the CRI handlers write them, for unit tests that put them in
// real stores without running a pod.

export function sandboxRecord(over: Partial<SandboxRecord> & Pick<SandboxRecord, 'id'>): SandboxRecord {
  return {
    metadata: { name: 'web', uid: 'u1', namespace: 'default', attempt: 0 },
    state: 'SANDBOX_READY',
    createdAt: '1',
    labels: {},
    annotations: {},
    runtimeHandler: '',
    hostname: 'web',
    hostNetwork: false,
    namespaces: { net: '/n', ipc: '/i', uts: '/u' },
    files: { dir: '/d', hostname: '/d/h', hosts: '/d/hosts', resolvConf: '/d/r' },
    logDirectory: '',
    portMappings: [],
    config: {},
    ...over,
  };
}

export function containerRecord(over: Partial<ContainerRecord> & Pick<ContainerRecord, 'id' | 'sandboxId'>): ContainerRecord {
  return {
    metadata: { name: 'app', attempt: 0 },
    image: 'busybox',
    imageId: 'sha256:1',
    imageRef: 'sha256:1',
    labels: {},
    annotations: {},
    state: 'CONTAINER_CREATED',
    createdAt: '2',
    startedAt: '0',
    finishedAt: '0',
    exitCode: 0,
    reason: '',
    message: '',
    pid: 42,
    logPath: '/l',
    bundle: '/b',
    rootfs: '/r',
    layers: [],
    mounts: [],
    stopSignal: 'SIGTERM',
    terminationMessagePath: '',
    config: {},
    ...over,
  };
}
