import type { ImageFsInfoResponse } from '../../proto/types.js';
import { fsUsage } from '../image/fs_usage.js';
import type { CriContext } from './context.js';

// ImageFsInfo: the filesystem holding image content and the one holding
// container snapshots, with what they use now. kubelet's image garbage
// collector and eviction manager decide from these numbers.
export async function imageFsInfo(_req: unknown, ctx: CriContext): Promise<ImageFsInfoResponse> {
  const now = String(BigInt(Date.now()) * 1000000n);
  const usage = async (mountpoint: string) => {
    const u = await fsUsage(mountpoint);
    return { timestamp: now, fsId: { mountpoint }, usedBytes: { value: String(u.usedBytes) }, inodesUsed: { value: String(u.inodesUsed) } };
  };
  return {
    imageFilesystems: [await usage(ctx.dirs.images)],
    containerFilesystems: [await usage(ctx.dirs.snapshots)],
  };
}
