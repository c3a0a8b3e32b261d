import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import {
  dir,
  file,
  hardlink,
  image,
  index,
  LayerCompressor,
  layerMediaType,
  opaque,
  sha256,
  symlink,
  tarball,
  whiteout,
  withParents,
  type Built,
  type BuiltImage,
  type Compression,
  type Flavor,
  type Layer,
  type LayerEntry,
  type Platform,
  type RunConfig,
} from './oci.js';

// Every image the test bed serves, built from Debian's busybox-static.
//
// critest's images (sigs.k8s.io/cri-tools pkg/validate/consts.go, framework/util.go)
// are served at their upstream repository paths without the host —
// gcr.io/k8s-staging-cri-tools/test-image-tag:test is <registry>/k8s-staging-cri-tools/test-image-tag:test,
// registry.k8s.io/e2e-test-images/busybox:1.29-2 is <registry>/e2e-test-images/busybox:1.29-2 —
// so the registry works as a mirror for gcr.io, registry.k8s.io and k8s.gcr.io. They are
// shaped like upstream (cri-tools images/build): Docker manifest lists over Docker
// schema 2 images, busybox plus the file or USER the upstream Dockerfile adds.

export type RegistryKind = 'plain' | 'auth';

export interface Publication {
  registry: RegistryKind;
  repository: string;
  tags: string[];
  artifact: Built;
  role: string;
  upstream?: string[];
  expect?: { files?: Record<string, string>; absent?: string[] };
}

/** Applets every image must have, whatever else busybox-static offers. */
const requiredApplets = ['sh', 'ls', 'cat', 'echo', 'sleep', 'id', 'env', 'true', 'false', 'httpd', 'wget', 'nc'];

/** The C sources of the stand-ins (test/images/stand-ins; the build runs from dist/test/images). */
const standIns = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'images', 'stand-ins');

const path = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const amd64: Platform = { os: 'linux', architecture: 'amd64' };
const arm64: Platform = { os: 'linux', architecture: 'arm64' };
const armV7: Platform = { os: 'linux', architecture: 'arm', variant: 'v7' };

// As in the busybox image on Docker Hub.
const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`;
const group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`;

/** busybox's applets as paths relative to / (e.g. "bin/sh", "usr/sbin/httpd"). */
function applets(busybox: string): string[] {
  const r = spawnSync(busybox, ['--list-full'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) throw new Error(`${busybox} --list-full failed: ${r.error?.message ?? r.stderr}`);
  const list = r.stdout
    .split('\n')
    .map((l) => l.trim())
    // linuxrc is busybox's init under another name, for initramfs roots; an image has no use for it.
    .filter((l) => l !== '' && l !== 'bin/busybox' && l !== 'linuxrc');
  const names = new Set(list.map((l) => l.slice(l.lastIndexOf('/') + 1)));
  const missing = requiredApplets.filter((a) => !names.has(a));
  if (missing.length > 0) throw new Error(`${busybox} lacks the applets ${missing.join(', ')}`);
  return list;
}

function baseRootfs(busybox: string): LayerEntry[] {
  const entries: LayerEntry[] = [
    dir('bin'),
    dir('dev'),
    dir('etc'),
    dir('home'),
    dir('proc'),
    dir('root', 0o700),
    dir('sys'),
    dir('tmp', 0o1777),
    dir('usr'),
    dir('usr/bin'),
    dir('usr/sbin'),
    dir('sbin'),
    dir('var'),
    dir('var/spool'),
    dir('var/spool/mail'),
    dir('var/www'),
    file('bin/busybox', readFileSync(busybox), 0o755),
    file('etc/passwd', passwd),
    file('etc/group', group),
  ];
  // Hard links, as in the busybox image on Docker Hub: masking /bin/ls (a masked
  // path) must hide ls, not the busybox every applet is.
  for (const a of applets(busybox)) entries.push(hardlink(a, 'bin/busybox'));
  // Applets Debian's busybox-static is built without, which critest runs.
  if (!entries.some((e) => e.path === 'bin/ipcs')) entries.push(file('bin/ipcs', ipcsScript, 0o755));
  if (!entries.some((e) => e.path === 'bin/pgrep')) entries.push(file('bin/pgrep', pgrepScript, 0o755));
  return withParents(entries);
}

const ipcsScript = `#!/bin/sh
# A stand-in for ipcs -m: the System V shared memory segments of this IPC
# namespace, from /proc/sysvipc/shm.
[ "$1" = "-m" ] || { echo "ipcs (stand-in): only -m is supported" >&2; exit 1; }
echo
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
tail -n +2 /proc/sysvipc/shm | while read -r key shmid perms size cpid lpid nattch uid rest; do
  printf '0x%08x %-10s %-10s %-10s %-10s %-10s\\n' "$key" "$shmid" "$uid" "$perms" "$size" "$nattch"
done
`;
const pgrepScript = `#!/bin/sh
# A stand-in for pgrep PATTERN: the pids whose process name matches PATTERN;
# exit 1 if none does.
[ $# -eq 1 ] || { echo "usage: pgrep PATTERN (stand-in)" >&2; exit 2; }
status=1
for d in /proc/[0-9]*; do
  name=$(cat "$d/comm" 2>/dev/null) || continue
  if echo "$name" | grep -q -- "$1"; then echo "\${d#/proc/}"; status=0; fi
done
exit $status
`;
const nginxIndex = `<!DOCTYPE html>
<html><head><title>Welcome to nginx!</title></head>
<body><h1>Welcome to nginx!</h1><p>usernode test stand-in (busybox httpd).</p></body></html>
`;
/** A program of stand-ins/ (C), compiled static: it runs in a busybox root with no libc. */
function compiled(name: string): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'usernode-standin-'));
  try {
    const out = join(dir, name);
    const r = spawnSync('gcc', ['-static', '-Os', '-s', '-o', out, join(standIns, `${name}.c`)], { encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      throw new Error(`gcc -static ${name}.c failed (gcc and libc6-dev are needed: scripts/host-setup.sh --tests): ${r.error?.message ?? r.stderr}`);
    }
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const httpdScript = `#!/bin/sh
# A stand-in for the httpd image built from busybox: busybox httpd on port 80.
echo "httpd (busybox) listening on port 80"
exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs
`;
const pauseScript = `#!/bin/sh
# A stand-in for the pause binary: sleeps until SIGTERM or SIGINT.
trap 'exit 0' TERM INT
while :; do sleep 86400 & wait $!; done
`;

export interface CatalogOptions {
  busybox: string;
}

class Builder {
  readonly compressor = new LayerCompressor();
  private baseTar: Promise<Buffer> | undefined;

  constructor(private readonly busybox: string) {}

  /** A layer of `entries` (compressed once per content, whatever the flavor). */
  async layer(entries: LayerEntry[] | Promise<Buffer>, flavor: Flavor, compression: Compression = 'gzip'): Promise<Layer> {
    const tarBytes = Array.isArray(entries) ? await tarball(entries) : await entries;
    const { bytes, diffId } = this.compressor.compress(tarBytes, compression);
    return { blob: { mediaType: layerMediaType(flavor, compression), digest: sha256(bytes), size: bytes.length, bytes }, diffId, compression };
  }

  /** The busybox root filesystem every runnable image starts from, tarred once. */
  base(flavor: Flavor, compression: Compression = 'gzip'): Promise<Layer> {
    this.baseTar ??= tarball(baseRootfs(this.busybox));
    return this.layer(this.baseTar, flavor, compression);
  }
}

export async function buildCatalog(o: CatalogOptions): Promise<Publication[]> {
  const b = new Builder(o.busybox);
  const marker = (p: Platform, flavor: Flavor): Promise<Layer> =>
    b.layer(withParents([file('etc/usernode-arch', `${p.architecture}${p.variant ? `/${p.variant}` : ''}\n`)]), flavor);
  const sh: RunConfig = { Env: [path], Cmd: ['sh'] };
  /** Ours carry a label naming them, so no two share an image id by accident. */
  const own = (repository: string, run: RunConfig = sh): RunConfig => ({ ...run, Labels: { 'org.usernode.test-image': repository } });

  /** busybox + extra layers for linux/amd64, as an image of `flavor`. */
  const busyboxImage = async (flavor: Flavor, extra: { name: string; entries: () => LayerEntry[] }[], run: RunConfig, platform = amd64): Promise<BuiltImage> => {
    const layers = [await b.base(flavor)];
    const history = ['busybox-static /bin/busybox, applet links, /etc/passwd, /etc/group'];
    for (const e of extra) {
      layers.push(await b.layer(e.entries(), flavor));
      history.push(e.name);
    }
    return image(flavor, platform, layers, run, history);
  };

  /**
   * Upstream's shape for a critest image: a Docker manifest list with the real
   * linux/amd64 image and a linux/arm64 entry whose only layers are a marker and
   * the same extra layers (never pulled on this host).
   */
  const critestList = async (extra: { name: string; entries: () => LayerEntry[] }[], run: RunConfig): Promise<Built> => {
    const real = await busyboxImage('docker', extra, run);
    const armLayers = [await marker(arm64, 'docker')];
    const armHistory = ['marker: /etc/usernode-arch'];
    for (const e of extra) {
      armLayers.push(await b.layer(e.entries(), 'docker'));
      armHistory.push(e.name);
    }
    return index('docker', [real, image('docker', arm64, armLayers, run, armHistory)]);
  };
  /** cri-tools images/image-test: busybox + ADD an empty file named `name` at /. */
  const imageTest = (name: string): Promise<Built> => critestList([{ name: `ADD /${name}`, entries: () => [file(name, '')] }], sh);
  const gcr = (repo: string, tag: string): string => `gcr.io/k8s-staging-cri-tools/${repo}:${tag}`;
  const k8s = (repo: string, tag: string): string => `registry.k8s.io/${repo}:${tag}`;

  const out: Publication[] = [];
  const add = (p: Publication): void => void out.push(p);

  // --- critest: pkg/validate/consts.go -------------------------------------------------
  add({
    registry: 'plain',
    repository: 'k8s-staging-cri-tools/test-image-latest',
    tags: ['latest'],
    artifact: await imageTest('test-image-latest'),
    role: 'critest testImageWithoutTag',
    upstream: ['gcr.io/k8s-staging-cri-tools/test-image-latest'],
    expect: { files: { 'test-image-latest': '' } },
  });
  for (const tag of ['test', 'all']) {
    add({
      registry: 'plain',
      repository: 'k8s-staging-cri-tools/test-image-tag',
      tags: [tag],
      artifact: await imageTest(tag),
      role: tag === 'test' ? 'critest testImageWithTag' : 'critest testImageWithAllReferences',
      upstream: [gcr('test-image-tag', tag)],
      expect: { files: { [tag]: '' } },
    });
  }
  add({
    registry: 'plain',
    repository: 'k8s-staging-cri-tools/test-image-digest',
    tags: ['latest'],
    artifact: await imageTest('test-image-digest'),
    role: 'critest testImageWithDigest stand-in: pullable by tag and by its own digest, never by the upstream sha256:9700f9… digest',
    expect: { files: { 'test-image-digest': '' } },
  });
  for (const n of [1, 2, 3]) {
    add({
      registry: 'plain',
      repository: `k8s-staging-cri-tools/test-image-${n}`,
      tags: ['latest'],
      artifact: await imageTest(`test-image-${n}`),
      role: 'critest testDifferentTagDifferentImageList: three different images',
      upstream: [gcr(`test-image-${n}`, 'latest')],
      expect: { files: { [`test-image-${n}`]: '' } },
    });
  }
  add({
    registry: 'plain',
    repository: 'k8s-staging-cri-tools/test-image-tags',
    tags: ['1', '2', '3'],
    artifact: await imageTest('same-image'),
    role: 'critest testDifferentTagSameImageList: one image under three tags',
    upstream: ['1', '2', '3'].map((t) => gcr('test-image-tags', t)),
    expect: { files: { 'same-image': '' } },
  });
  // cri-tools images/build IMAGE_USERS; critest asserts uid 1002, username www-data, uid 1003, username www-data.
  for (const [repo, user] of [
    ['test-image-user-uid', '1002'],
    ['test-image-user-username', 'www-data'],
    ['test-image-user-uid-group', '1003:1004'],
    ['test-image-user-username-group', 'www-data:1004'],
  ] as const) {
    add({
      registry: 'plain',
      repository: `k8s-staging-cri-tools/${repo}`,
      tags: ['latest'],
      artifact: await critestList([], { ...sh, User: user }),
      role: `critest image user: USER ${user}`,
      upstream: [`gcr.io/k8s-staging-cri-tools/${repo}`],
    });
  }
  // cri-tools images/image-predefined-group: adduser -u 1000 default-user, addgroup -g 50000, USER 1000.
  add({
    registry: 'plain',
    repository: 'k8s-staging-cri-tools/test-image-predefined-group',
    tags: ['latest'],
    artifact: await critestList(
      [
        {
          name: 'adduser default-user (1000), group-defined-in-image (50000)',
          entries: () => [
            file('etc/passwd', `${passwd}default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n`),
            file('etc/group', `${group}default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n`),
            dir('home'),
            dir('home/default-user', 0o755, { uid: 1000, gid: 1000 }),
          ],
        },
      ],
      { ...sh, User: '1000' },
    ),
    role: 'critest testImagePreDefinedGroup: uid 1000 in group 50000 of /etc/group',
    upstream: ['gcr.io/k8s-staging-cri-tools/test-image-predefined-group'],
  });
  const nginxBinary = compiled('nginx');
  const nginxLayer = {
    name: 'nginx stand-in: /usr/sbin/nginx (busybox httpd), /usr/share/nginx/html',
    entries: () =>
      withParents([
        file('usr/sbin/nginx', nginxBinary, 0o755),
        file('usr/share/nginx/html/index.html', nginxIndex),
        dir('var/run'),
        dir('etc/nginx'),
      ]),
  };
  const nginxRun = (port: number): RunConfig => ({
    Env: [path, `NGINX_PORT=${port}`],
    Cmd: ['nginx', '-g', 'daemon off;'],
    ExposedPorts: { [`${port}/tcp`]: {} },
  });
  // consts_linux.go hostNetWebServerImage: registry + "hostnet-nginx-" + GOARCH, listening on 12003.
  add({
    registry: 'plain',
    repository: 'k8s-staging-cri-tools/hostnet-nginx-amd64',
    tags: ['latest'],
    artifact: await busyboxImage('docker', [nginxLayer], nginxRun(12003)),
    role: 'critest hostNetWebServerImage: a web server on port 12003',
    upstream: ['gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64'],
  });

  // --- critest: framework/util.go and the e2e images pkg/validate uses ------------------
  add({
    registry: 'plain',
    repository: 'e2e-test-images/busybox',
    tags: ['1.29-2'],
    artifact: await critestList([], sh),
    role: 'critest DefaultLinuxContainerImage (busybox)',
    upstream: [k8s('e2e-test-images/busybox', '1.29-2')],
  });
  add({
    registry: 'plain',
    repository: 'e2e-test-images/nginx',
    tags: ['1.14-2'],
    artifact: await critestList([nginxLayer], nginxRun(80)),
    role: 'critest webServerLinuxImage / nginxContainerImage: a web server on port 80 named nginx, pid in /var/run/nginx.pid',
    upstream: [k8s('e2e-test-images/nginx', '1.14-2')],
  });
  add({
    registry: 'plain',
    repository: 'e2e-test-images/nonewprivs',
    tags: ['1.3'],
    artifact: await critestList(
      [
        {
          name: 'COPY nnp /usr/local/bin/nnp; chmod +s (prints its effective uid)',
          entries: () => withParents([file('usr/local/bin/nnp', compiled('nnp'), 0o4755, { uid: 0, gid: 0 })]),
        },
      ],
      { Env: [path], Entrypoint: ['/usr/local/bin/nnp'] },
    ),
    role: 'critest noNewPrivsImage: a set-user-ID root program that prints "Effective uid: N"',
    upstream: [k8s('e2e-test-images/nonewprivs', '1.3')],
  });
  add({
    registry: 'plain',
    repository: 'e2e-test-images/httpd',
    tags: ['2.4.39-4'],
    artifact: await critestList(
      [
        {
          name: 'httpd stand-in: httpd-foreground (busybox httpd), htdocs',
          entries: () =>
            withParents([
              file('usr/local/bin/httpd-foreground', httpdScript, 0o755),
              file('usr/local/apache2/htdocs/index.html', '<html><body><h1>It works!</h1></body></html>\n'),
            ]),
        },
      ],
      { Env: [path], Cmd: ['httpd-foreground'], ExposedPorts: { '80/tcp': {} } },
    ),
    role: 'critest httpdImage (multi-container tests): a web server on port 80 that logs "httpd"',
    upstream: [k8s('e2e-test-images/httpd', '2.4.39-4')],
  });
  // testSameImageDifferentRegistries: registry.k8s.io/pause:3.9 and k8s.gcr.io/pause:3.9 are one image.
  add({
    registry: 'plain',
    repository: 'pause',
    tags: ['3.9', '3.10'],
    artifact: await critestList([{ name: 'pause stand-in: /pause', entries: () => [file('pause', pauseScript, 0o755)] }], {
      Env: [path],
      Entrypoint: ['/pause'],
    }),
    role: 'pause image (critest testSameImageDifferentRegistries; a sandbox image): /pause sleeps until SIGTERM',
    upstream: ['registry.k8s.io/pause:3.9', 'k8s.gcr.io/pause:3.9', 'registry.k8s.io/pause:3.10'],
  });

  // --- usernode's own -----------------------------------------------------------------------
  add({
    registry: 'plain',
    repository: 'usernode/busybox',
    tags: ['latest'],
    artifact: await busyboxImage('oci', [], own('usernode/busybox')),
    role: 'plain OCI image: busybox, one gzip layer',
    expect: { files: { 'etc/passwd': passwd } },
  });
  add({
    registry: 'plain',
    repository: 'usernode/nonroot',
    tags: ['latest'],
    artifact: await busyboxImage(
      'oci',
      [
        {
          name: 'user usernode (1000:1000)',
          entries: () => [
            file('etc/passwd', `${passwd}usernode:x:1000:1000:usernode:/home/usernode:/bin/sh\n`),
            file('etc/group', `${group}usernode:x:1000:\n`),
            dir('home'),
            dir('home/usernode', 0o755, { uid: 1000, gid: 1000 }),
          ],
        },
      ],
      own('usernode/nonroot', { ...sh, User: '1000:1000', WorkingDir: '/home/usernode' }),
    ),
    role: 'OCI image running as USER 1000:1000',
  });
  {
    const run = own('usernode/multiarch');
    const real = await busyboxImage('oci', [{ name: 'marker amd64', entries: () => withParents([file('etc/usernode-arch', 'amd64\n')]) }], run);
    const others = [arm64, armV7].map(async (p) => image('oci', p, [await marker(p, 'oci')], run, ['marker: /etc/usernode-arch']));
    add({
      registry: 'plain',
      repository: 'usernode/multiarch',
      tags: ['latest'],
      artifact: index('oci', [real, ...(await Promise.all(others))]),
      role: 'OCI image index: linux/amd64 (busybox), linux/arm64 and linux/arm/v7 (a marker layer each)',
      expect: { files: { 'etc/usernode-arch': 'amd64\n' } },
    });
  }
  add({
    registry: 'plain',
    repository: 'usernode/multilayer',
    tags: ['latest'],
    artifact: await busyboxImage(
      'oci',
      [
        {
          name: 'lower: /data/lower.txt, /data/keep.txt, /opaque/old.txt, /opaque/sub/old.txt',
          entries: () =>
            withParents([
              file('data/lower.txt', 'from layer 2\n'),
              file('data/keep.txt', 'from layer 2\n'),
              file('opaque/old.txt', 'from layer 2\n'),
              file('opaque/sub/old.txt', 'from layer 2\n'),
            ]),
        },
        {
          name: 'upper: whiteout /data/lower.txt, /data/keep.txt rewritten, /opaque made opaque',
          entries: () =>
            withParents([whiteout('data/lower.txt'), file('data/keep.txt', 'from layer 3\n'), file('data/upper.txt', 'from layer 3\n'), opaque('opaque'), file('opaque/new.txt', 'from layer 3\n')]),
        },
      ],
      own('usernode/multilayer'),
    ),
    role: 'OCI image, 3 layers: a whiteout of a lower file and an opaque directory',
    expect: {
      files: { 'data/keep.txt': 'from layer 3\n', 'data/upper.txt': 'from layer 3\n', 'opaque/new.txt': 'from layer 3\n' },
      absent: ['data/lower.txt', 'data/.wh.lower.txt', 'opaque/old.txt', 'opaque/sub', 'opaque/.wh..wh..opq'],
    },
  });
  add({
    registry: 'plain',
    repository: 'usernode/hostile',
    tags: ['latest'],
    artifact: await busyboxImage(
      'oci',
      [
        {
          name: 'hostile: ../escape, evil -> ../../../../../tmp, evil/usernode-pwned',
          entries: () => [file('../escape', 'escaped the rootfs\n'), symlink('evil', '../../../../../tmp'), file('evil/usernode-pwned', 'pwned through a symlink\n')],
        },
      ],
      own('usernode/hostile'),
    ),
    role: 'OCI image whose second layer tries to write outside the rootfs: a ../escape entry, and a file through the symlink evil -> ../../../../../tmp',
  });
  add({
    registry: 'plain',
    repository: 'usernode/docker-schema2',
    tags: ['latest'],
    artifact: await busyboxImage('docker', [], own('usernode/docker-schema2')),
    role: 'Docker schema 2 image: docker manifest, config and layer media types',
  });
  add({
    registry: 'plain',
    repository: 'usernode/zstd',
    tags: ['latest'],
    artifact: image('oci', amd64, [await b.base('oci', 'zstd')], own('usernode/zstd'), ['busybox-static, zstd']),
    role: 'OCI image with a zstd layer (same diff_id as the gzip busybox layer)',
  });
  add({
    registry: 'auth',
    repository: 'usernode/private',
    tags: ['latest'],
    artifact: await busyboxImage('oci', [{ name: 'marker private', entries: () => withParents([file('etc/usernode-private', 'private\n')]) }], own('usernode/private')),
    role: 'OCI image on the basic-auth registry: pulling needs the credentials',
    expect: { files: { 'etc/usernode-private': 'private\n' } },
  });
  return out;
}
