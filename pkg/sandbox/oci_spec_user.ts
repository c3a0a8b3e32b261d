import { invalidArgument } from '../errdefs/errors.js';
import type { CriInt64, CriLinuxContainerSecurityContext, IdMapping } from './oci_spec_types.js';

// The container's uid, gid and supplementary groups, resolved the way
// containerd's CRI plugin does (oci.WithUser / WithAdditionalGIDs): a user
// from the security context wins over the image's USER; names are looked up in
// the image's own /etc/passwd and /etc/group, never the node's.

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
}

export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}

/** /etc/passwd text → entries; comments, blank and malformed lines are skipped as libc does. */
export function parsePasswd(text: string | undefined): PasswdEntry[] {
  const out: PasswdEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const f = line.trim().split(':');
    if (f.length < 4 || f[0] === '' || f[0]!.startsWith('#')) continue;
    const uid = decimal(f[2]!);
    const gid = decimal(f[3]!);
    if (uid === undefined || gid === undefined) continue;
    out.push({ name: f[0]!, uid, gid });
  }
  return out;
}

/** /etc/group text → entries. */
export function parseGroup(text: string | undefined): GroupEntry[] {
  const out: GroupEntry[] = [];
  for (const line of (text ?? '').split('\n')) {
    const f = line.trim().split(':');
    if (f.length < 3 || f[0] === '' || f[0]!.startsWith('#')) continue;
    const gid = decimal(f[2]!);
    if (gid === undefined) continue;
    out.push({ name: f[0]!, gid, members: (f[3] ?? '').split(',').filter(Boolean) });
  }
  return out;
}

function decimal(s: string): number | undefined {
  return /^\d+$/.test(s) ? Number(s) : undefined;
}

export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Sorted, unique, and including the primary gid, as containerd reports them. */
  additionalGids: number[];
}

export interface UserInput {
  securityContext: CriLinuxContainerSecurityContext | null | undefined;
  imageUser: string | undefined;
  passwd: string | undefined;
  group: string | undefined;
  /** Container-side id ranges that exist in the container's user namespace. */
  uidRanges: readonly IdRange[];
  gidRanges: readonly IdRange[];
}

export interface IdRange {
  first: number;
  /** Inclusive. */
  last: number;
}

const sc = 'config.linux.securityContext';
const imageUserField = 'image.config.User';

/** The one id range of the node user namespace that a container can use: 0..65535. */
export const nodeIdRange: IdRange = { first: 0, last: 65535 };

/** Container-side ranges of a pod user namespace's mappings. */
export function rangesOf(mappings: readonly IdMapping[]): IdRange[] {
  return mappings.filter((m) => m.length > 0).map((m) => ({ first: m.containerId, last: m.containerId + m.length - 1 }));
}

type Part = { kind: 'id'; id: number } | { kind: 'name'; name: string };

export function resolveUser(input: UserInput): ResolvedUser {
  const ctx = input.securityContext;
  const users = parsePasswd(input.passwd);
  const groups = parseGroup(input.group);

  let user: Part;
  let group: Part | undefined;
  let userField: string;
  let groupField: string;
  const runAsGroup = ctx?.runAsGroup ?? undefined;
  if (ctx?.runAsUsername) {
    user = { kind: 'name', name: ctx.runAsUsername };
    userField = `${sc}.runAsUsername`;
  } else if (ctx?.runAsUser) {
    user = { kind: 'id', id: int64(ctx.runAsUser.value, `${sc}.runAsUser`) };
    userField = `${sc}.runAsUser`;
  } else if (runAsGroup) {
    // containerd: "user group is specified without user"; critest expects the refusal.
    throw invalidArgument('runAsGroup is set without runAsUser or runAsUsername', { field: `${sc}.runAsGroup` });
  } else if (input.imageUser) {
    const parts = input.imageUser.split(':');
    if (parts.length > 2 || parts.some((p) => p === '')) throw invalidArgument(`invalid image USER "${input.imageUser}": want user, uid, user:group or uid:gid`, { field: imageUserField });
    user = part(parts[0]!);
    group = parts[1] === undefined ? undefined : part(parts[1]);
    userField = imageUserField;
  } else {
    user = { kind: 'id', id: 0 };
    userField = `${sc}.runAsUser`;
  }
  groupField = userField;
  if (runAsGroup) {
    group = { kind: 'id', id: int64(runAsGroup.value, `${sc}.runAsGroup`) };
    groupField = `${sc}.runAsGroup`;
  }

  let uid: number;
  let gid: number;
  let username: string | undefined;
  if (user.kind === 'name') {
    const name = user.name;
    const entry = users.find((u) => u.name === name);
    if (!entry) throw invalidArgument(`user "${name}" is not in the image's /etc/passwd${input.passwd === undefined ? ' (the image has none)' : ''}`, { field: userField });
    ({ uid, gid } = entry);
    username = name;
  } else {
    const id = user.id;
    const entry = users.find((u) => u.uid === id);
    uid = id;
    // An unknown numeric user runs with gid 0, as containerd's WithUserID.
    gid = entry?.gid ?? 0;
    username = entry?.name;
  }
  if (group) {
    if (group.kind === 'id') gid = group.id;
    else {
      const name = group.name;
      const entry = groups.find((g) => g.name === name);
      if (!entry) throw invalidArgument(`group "${name}" is not in the image's /etc/group${input.group === undefined ? ' (the image has none)' : ''}`, { field: groupField });
      gid = entry.gid;
    }
  }

  const extra: Array<{ gid: number; field: string }> = [];
  const policy = ctx?.supplementalGroupsPolicy ?? 'Merge';
  if (policy === 'Merge' && username !== undefined) {
    // Groups that list the user as a member; a group named after the user is its primary one.
    for (const g of groups) if (g.name !== username && g.members.includes(username)) extra.push({ gid: g.gid, field: userField });
  }
  (ctx?.supplementalGroups ?? []).forEach((g, i) => {
    const field = `${sc}.supplementalGroups[${i}]`;
    extra.push({ gid: int64(g, field), field });
  });

  checkId(uid, input.uidRanges, 'uid', userField);
  checkId(gid, input.gidRanges, 'gid', groupField);
  for (const e of extra) checkId(e.gid, input.gidRanges, 'gid', e.field);
  const additionalGids = [...new Set([gid, ...extra.map((e) => e.gid)])].sort((a, b) => a - b);
  return { uid, gid, additionalGids };
}

function part(s: string): Part {
  return /^\d+$/.test(s) ? { kind: 'id', id: Number(s) } : { kind: 'name', name: s };
}

function int64(v: CriInt64, field: string): number {
  const s = String(v).trim();
  if (!/^-?\d+$/.test(s)) throw invalidArgument(`"${s}" is not an integer`, { field });
  return Number(s);
}

function checkId(id: number, ranges: readonly IdRange[], what: 'uid' | 'gid', field: string): void {
  if (ranges.some((r) => id >= r.first && id <= r.last)) return;
  const have = ranges.map((r) => `${r.first}..${r.last}`).join(', ') || 'none';
  throw invalidArgument(`${what} ${id} is not mapped in the container's user namespace (mapped: ${have})`, { field });
}
