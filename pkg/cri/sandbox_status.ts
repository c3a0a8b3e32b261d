import type { PodSandboxStatus, PodSandboxStatusRequest__Output, PodSandboxStatusResponse } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { SandboxRecord } from '../sandbox/sandbox_store.js';
import type { CriContext } from './context.js';

// PodSandboxStatus: state, IPs and namespace modes; verbose adds the record
// (namespace files, CNI result) as containerd's "info".
export async function podSandboxStatus(req: PodSandboxStatusRequest__Output, ctx: CriContext): Promise<PodSandboxStatusResponse> {
  if (req.podSandboxId === '') throw invalidArgument('pod_sandbox_id is required', { field: 'pod_sandbox_id' });
  const r = ctx.pods.store.get(req.podSandboxId);
  const resources = r.resources ? { resources: r.resources } : {};
  return {
    status: sandboxStatusOf(r),
    info: req.verbose ? { info: JSON.stringify({ namespaces: r.namespaces, hostname: r.hostname, files: r.files, cniResult: r.network?.cniResult ?? null, portMappings: r.portMappings, ...resources }) } : {},
    containersStatuses: [],
    timestamp: String(BigInt(Date.now()) * 1000000n),
  };
}

/** The CRI status of a record as it stands. */
export function sandboxStatusOf(r: SandboxRecord): PodSandboxStatus {
  const nsOpts = (r.config as { linux?: { securityContext?: { namespaceOptions?: { pid?: string; ipc?: string } } } }).linux?.securityContext?.namespaceOptions;
  return {
    id: r.id,
    metadata: r.metadata,
    state: r.state,
    createdAt: r.createdAt,
    network: r.network ? { ip: r.network.ip, additionalIps: r.network.additionalIps.map((ip) => ({ ip })) } : { ip: '', additionalIps: [] },
    linux: {
      namespaces: {
        options: {
          network: r.hostNetwork ? 'NODE' : 'POD',
          pid: (nsOpts?.pid as 'POD' | 'CONTAINER' | 'NODE' | undefined) ?? 'CONTAINER',
          ipc: (nsOpts?.ipc as 'POD' | 'NODE' | undefined) ?? 'POD',
          usernsOptions: r.userns ? { mode: 'POD', uids: r.userns.uids, gids: r.userns.gids } : { mode: 'NODE', uids: [], gids: [] },
        },
      },
    },
    labels: r.labels,
    annotations: r.annotations,
    runtimeHandler: r.runtimeHandler,
  };
}
