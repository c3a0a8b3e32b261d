import type { Logger } from '../../log/logger.js';

/** Host tools the applier runs for what Node's fs cannot do. Absolute paths; undefined = unavailable (warn and skip). */
export interface UnpackTools {
  /** mknod(1): overlay whiteouts (char device 0:0) in 'layer' mode. */
  mknod?: string;
  /** setfattr(1): `user.overlay.opaque` in 'layer' mode and the layer's own `SCHILY.xattr.*` records. */
  setfattr?: string;
  /** mkfifo(1): named pipes. */
  mkfifo?: string;
}

export interface ApplyOptions {
  /**
   * 'layer': target is this layer's own empty dir, to be an overlayfs lower: whiteouts become
   * overlay whiteouts (char device 0:0 made with the mknod tool; opaque dirs get xattr
   * user.overlay.opaque=y via setfattr — the mount will use `userxattr`).
   * 'merge': target is an accumulated rootfs (copy snapshotter): `.wh.NAME` deletes NAME,
   * `.wh..wh..opq` empties that dir of everything not written by this same layer.
   */
  mode: 'layer' | 'merge';
  /**
   * lchown entries to their tar uid/gid (true inside the node user namespace, where we are
   * uid 0 with 65536 ids). A chown failure is then an error naming the entry and the id.
   * false: ownership ignored (unit tests as an ordinary user).
   */
  preserveOwnership: boolean;
  log: Logger;
  tools: UnpackTools;
  signal?: AbortSignal;
}

export interface SkippedEntry {
  entry: string;
  reason: string;
}

export interface ApplyResult {
  /** Tar members seen (PAX and GNU long-name records are part of the member they describe). */
  entries: number;
  /** Bytes of regular-file content written. */
  bytesWritten: number;
  /** What could not be applied without failing the layer (devices, xattrs, missing tools). */
  skipped: SkippedEntry[];
}

/** Container ids the node user namespace maps (0 → the user, 1..65535 → the subuid range). */
export const MAX_MAPPED_ID = 65535;
