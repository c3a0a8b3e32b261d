import type { VersionRequest__Output, VersionResponse } from '../../proto/types.js';
import type { CriContext } from './context.js';

// The kubelet-facing API version containerd and CRI-O report here.
const kubeletApiVersion = '0.1.0';

export async function version(_req: VersionRequest__Output, ctx: CriContext): Promise<VersionResponse> {
  return {
    version: kubeletApiVersion,
    runtimeName: 'usernode',
    runtimeVersion: ctx.version,
    runtimeApiVersion: 'v1',
  };
}
