import type { Header } from 'tar-stream';

import { invalidArgument } from '../../errdefs/errors.js';

// One tar member as the applier needs it: tar-stream has already folded GNU
// long names and PAX path/linkpath/size into the header; the PAX records it
// leaves alone (uid, gid, mtime, atime, xattrs, sparse maps) are read here.

export const entryKinds = ['file', 'directory', 'symlink', 'hardlink', 'fifo', 'char-device', 'block-device'] as const;
export type EntryKind = (typeof entryKinds)[number];

export interface Xattr {
  name: string;
  value: Buffer;
  /** Why the value cannot be applied as the layer meant it; the xattr is then skipped. */
  problem?: string;
}

export interface LayerEntry {
  /** The member name as the tar spells it, for messages. */
  name: string;
  kind: EntryKind;
  size: number;
  /** Permission bits including setuid, setgid and sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch, fractional when PAX gives them. */
  mtime: number;
  atime: number;
  linkname: string;
  devmajor: number;
  devminor: number;
  xattrs: Xattr[];
}

const kindOfType: Readonly<Record<string, EntryKind>> = {
  file: 'file',
  'contiguous-file': 'file',
  directory: 'directory',
  symlink: 'symlink',
  link: 'hardlink',
  fifo: 'fifo',
  'character-device': 'char-device',
  'block-device': 'block-device',
};

export function readLayerEntry(header: Header): LayerEntry {
  const name = header.name;
  const pax = paxRecords(header.pax);
  // tar-stream gives null for a type flag it does not know (GNU sparse 'S', volume labels, …).
  const type: string | null = header.type;
  const kind = type === null ? undefined : Object.hasOwn(kindOfType, type) ? kindOfType[type] : undefined;
  if (kind === undefined) {
    throw invalidArgument(`layer entry "${name}" has an unsupported tar type ${type ?? '(unknown type flag)'}`, { field: name });
  }
  if (Object.keys(pax).some((k) => k.startsWith('GNU.sparse.'))) {
    throw invalidArgument(`layer entry "${name}" is a GNU sparse file, which layers do not use and this applier does not support`, { field: name });
  }
  const mtime = paxNumber(pax, 'mtime', name) ?? (header.mtime ? header.mtime.getTime() / 1000 : 0);
  return {
    name,
    kind,
    size: header.size ?? 0,
    mode: (header.mode ?? (kind === 'directory' ? 0o755 : 0o644)) & 0o7777,
    uid: paxId(pax, 'uid', name) ?? header.uid ?? 0,
    gid: paxId(pax, 'gid', name) ?? header.gid ?? 0,
    mtime,
    atime: paxNumber(pax, 'atime', name) ?? mtime,
    linkname: header.linkname ?? '',
    devmajor: header.devmajor ?? 0,
    devminor: header.devminor ?? 0,
    xattrs: xattrsOf(pax),
  };
}

function paxRecords(pax: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof pax !== 'object' || pax === null) return out;
  for (const [k, v] of Object.entries(pax)) if (typeof v === 'string') out[k] = v;
  return out;
}

function paxId(pax: Record<string, string>, key: 'uid' | 'gid', entry: string): number | undefined {
  const v = pax[key];
  if (v === undefined) return undefined;
  if (!/^\d{1,15}$/.test(v)) throw invalidArgument(`layer entry "${entry}" has an invalid PAX ${key} "${v}"`, { field: entry });
  return Number(v);
}

function paxNumber(pax: Record<string, string>, key: 'mtime' | 'atime', entry: string): number | undefined {
  const v = pax[key];
  if (v === undefined) return undefined;
  if (!/^-?\d{1,15}(\.\d+)?$/.test(v)) throw invalidArgument(`layer entry "${entry}" has an invalid PAX ${key} "${v}"`, { field: entry });
  return Number(v);
}

// SCHILY.xattr.NAME=raw value (GNU tar, Go's archive/tar, star);
// LIBARCHIVE.xattr.URL-ENCODED-NAME=base64 value (bsdtar).
function xattrsOf(pax: Record<string, string>): Xattr[] {
  const out = new Map<string, Xattr>();
  for (const [key, value] of Object.entries(pax)) {
    if (key.startsWith('SCHILY.xattr.')) {
      const name = key.slice('SCHILY.xattr.'.length);
      // tar-stream decodes PAX records as UTF-8, so a binary value (a file
      // capability, say) arrives with U+FFFD in place of its bytes.
      const problem = value.includes('\uFFFD') ? 'value is binary and was not preserved by the PAX decoder' : undefined;
      out.set(name, { name, value: Buffer.from(value, 'utf8'), ...(problem ? { problem } : {}) });
    } else if (key.startsWith('LIBARCHIVE.xattr.')) {
      let name: string;
      try {
        name = decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length));
      } catch {
        name = key.slice('LIBARCHIVE.xattr.'.length);
        out.set(name, { name, value: Buffer.alloc(0), problem: 'name is not valid percent-encoding' });
        continue;
      }
      if (!out.has(name)) out.set(name, { name, value: Buffer.from(value, 'base64') });
    }
  }
  return [...out.values()];
}
