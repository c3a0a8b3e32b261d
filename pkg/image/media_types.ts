// Media types of the OCI image spec and their Docker schema-2 equivalents.

export const mediaTypes = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  ociLayerNondistGzip: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  dockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
} as const;

export const manifestAccept = [mediaTypes.ociIndex, mediaTypes.dockerList, mediaTypes.ociManifest, mediaTypes.dockerManifest].join(', ');

export function isIndex(mt: string | undefined): boolean {
  return mt === mediaTypes.ociIndex || mt === mediaTypes.dockerList;
}

export function isManifest(mt: string | undefined): boolean {
  return mt === mediaTypes.ociManifest || mt === mediaTypes.dockerManifest;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: Platform;
  annotations?: Record<string, string>;
  urls?: string[];
}

export interface Platform {
  architecture: string;
  os: string;
  variant?: string;
  'os.version'?: string;
}

export interface ImageIndex {
  schemaVersion: number;
  mediaType?: string;
  manifests: Descriptor[];
}

export interface ImageManifest {
  schemaVersion: number;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

/** The parts of the OCI image config the runtime uses. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string> | null;
    ExposedPorts?: Record<string, object> | null;
    Volumes?: Record<string, object> | null;
    StopSignal?: string;
  };
  rootfs: { type: string; diff_ids: string[] };
  created?: string;
  history?: unknown[];
}

/** The node's platform, as OCI names it. */
export function nodePlatform(arch: string = process.arch): Platform {
  switch (arch) {
    case 'x64':
      return { os: 'linux', architecture: 'amd64' };
    case 'arm64':
      return { os: 'linux', architecture: 'arm64', variant: 'v8' };
    case 'arm':
      return { os: 'linux', architecture: 'arm', variant: 'v7' };
    case 'ia32':
      return { os: 'linux', architecture: '386' };
    default:
      return { os: 'linux', architecture: arch };
  }
}

/**
 * The index entry for `want`: same os and architecture; the best variant the
 * node can run — its own, then older ones it is compatible with (arm/v7 runs
 * v6 and v5 code, as containerd's matcher allows) — then an entry with no
 * variant. arm64 treats "v8" and no variant alike.
 */
export function selectPlatform(manifests: readonly Descriptor[], want: Platform): Descriptor | undefined {
  const norm = (p: Platform): string | undefined => (p.architecture === 'arm64' && (p.variant === undefined || p.variant === 'v8') ? 'v8' : p.variant);
  const candidates = manifests.filter((m) => m.platform && m.platform.os === want.os && m.platform.architecture === want.architecture && isManifest(m.mediaType ?? mediaTypes.ociManifest));
  const own = norm(want);
  const compatible = want.architecture === 'arm' && own !== undefined ? armVariantsFrom(own) : own === undefined ? [] : [own];
  for (const v of compatible) {
    const hit = candidates.find((m) => norm(m.platform!) === v);
    if (hit) return hit;
  }
  return candidates.find((m) => m.platform!.variant === undefined) ?? (own === undefined ? candidates[0] : undefined);
}

/** "v7" → v7, v6, v5: the 32-bit arm variants a CPU of that level runs. */
function armVariantsFrom(v: string): string[] {
  const n = Number(/^v(\d)$/.exec(v)?.[1] ?? NaN);
  if (!Number.isFinite(n)) return [v];
  const out: string[] = [];
  for (let i = Math.min(n, 8); i >= 5; i--) out.push(`v${i}`);
  return out;
}
