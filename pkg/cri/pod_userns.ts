import type { IDMapping__Output, NamespaceOption__Output } from '../../proto/types.js';
import { invalidArgument } from '../errdefs/errors.js';
import type { IdMapping } from '../sandbox/oci_spec_types.js';
import type { SandboxRecord } from '../sandbox/sandbox_store.js';

// The user namespace a pod asks for (NamespaceOption.userns_options, what
// kubelet sends for `hostUsers: false`): NODE (or nothing) is the node's own
// user namespace; POD is one of the pod's own, nested in the node's, with the
// single uid and gid mapping kubelet allocated. The host ids of the mapping
// are ids of the node's user namespace, so they must lie inside it: a user
// with a 65536-id /etc/subuid range has node ids 0-65536.

export type PodUserns = NonNullable<SandboxRecord['userns']>;

const field = 'config.linux.security_context.namespace_options.userns_options';

function mappingOf(list: readonly IDMapping__Output[], which: 'uids' | 'gids', nodeIds: number): IdMapping[] {
  const f = `${field}.${which}`;
  if (list.length !== 1) throw invalidArgument(`a pod user namespace takes exactly one ${which} mapping, not ${list.length}`, { field: f });
  const m = list[0]!;
  if (m.containerId !== 0) throw invalidArgument(`the ${which} mapping must start at container id 0 (it starts at ${m.containerId})`, { field: `${f}[0].container_id` });
  if (!(m.length > 0)) throw invalidArgument(`the ${which} mapping has length ${m.length}`, { field: `${f}[0].length` });
  if (m.hostId + m.length > nodeIds) {
    throw invalidArgument(
      `host ids ${m.hostId}-${m.hostId + m.length - 1} are outside the node's user namespace, which has ids 0-${nodeIds - 1} (a larger /etc/subuid and /etc/subgid range for the user gives it more)`,
      { field: `${f}[0].host_id` },
    );
  }
  if (m.hostId === 0) throw invalidArgument("the mapping may not include node id 0 (the user's own uid): the pod's root would be the node's", { field: `${f}[0].host_id` });
  return [{ containerId: m.containerId, hostId: m.hostId, length: m.length }];
}

/** The pod's own user namespace, or undefined for the node's; bad options are InvalidArgument naming the field. */
export function podUserNamespace(opts: NamespaceOption__Output | null | undefined, nodeIds: { uids: number; gids: number }): PodUserns | undefined {
  const u = opts?.usernsOptions;
  if (!u) return undefined;
  switch (u.mode) {
    case 'NODE':
      if (u.uids.length > 0 || u.gids.length > 0) throw invalidArgument('user namespace mode NODE takes no mappings', { field });
      return undefined;
    case 'POD':
      break;
    default:
      throw invalidArgument(`user namespace mode ${String(u.mode)} is not supported (POD or NODE)`, { field: `${field}.mode` });
  }
  for (const [k, mode] of [['network', opts.network], ['ipc', opts.ipc], ['pid', opts.pid]] as const) {
    if (mode === 'NODE') throw invalidArgument(`a pod with its own user namespace cannot use the node's ${k} namespace`, { field: `config.linux.security_context.namespace_options.${k}` });
  }
  return { uids: mappingOf(u.uids, 'uids', nodeIds.uids), gids: mappingOf(u.gids, 'gids', nodeIds.gids) };
}

/** How many ids the node's user namespace has, from a uid_map / gid_map text (its inner ranges). */
export function idCountOf(map: string): number {
  let top = 0;
  for (const line of map.split('\n')) {
    const [inner, , count] = line.trim().split(/\s+/).map(Number);
    if (inner !== undefined && count !== undefined && Number.isFinite(inner) && Number.isFinite(count)) top = Math.max(top, inner + count);
  }
  return top;
}
