import type { RuntimeConfigResponse } from '../../proto/types.js';
import type { CriContext } from './context.js';

// kubelet (1.28+) asks which cgroup driver the runtime uses and configures itself
// to match. usernode manages cgroups through cgroupfs paths (no systemd user
// manager is assumed on HPC hosts).
export async function runtimeConfig(_req: unknown, ctx: CriContext): Promise<RuntimeConfigResponse> {
  return { linux: { cgroupDriver: ctx.cgroupDriver } };
}
