import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, posix } from 'node:path';

import type { CreateContainerRequest__Output, CreateContainerResponse } from '../../proto/types.js';
import { failedPrecondition, invalidArgument, messageOf, notFound, unimplemented } from '../errdefs/errors.js';
import { mountRootsAnnotation, parseMountRoots } from '../safepath/mount_roots.js';
import { buildOciSpecWithNotes, type CriContainerConfig } from '../sandbox/oci_spec.js';
import { containerNameKey, type ContainerRecord } from '../sandbox/container_store.js';
import type { SandboxRecord } from '../sandbox/sandbox_store.js';
import { CleanupStack } from './cleanup_stack.js';
import type { CriContext } from './context.js';
import { checkContainerConfig } from './validate.js';

// CreateContainer: the image's layers under a rootfs of the container's own,
// an OCI spec joining the pod's namespaces, and the container created (not
// started) by runc under conmon, which outlives the agent. A failure midway
// leaves no mount, bundle or process. The record is the commit point,
// written last: a crash before it leaves only things named by the
// container's id (snapshots/containers/<id>, bundles/<id>, runc's state,
// conmon's argv), which the next start releases (recover.ts).

export async function createContainer(req: CreateContainerRequest__Output, ctx: CriContext): Promise<CreateContainerResponse> {
  const config = req.config;
  if (!config) throw invalidArgument('a container config is required', { field: 'config' });
  checkContainerConfig(config);
  const imageName = config.image?.image ?? '';
  if (imageName === '') throw invalidArgument('an image is required', { field: 'config.image.image' });
  const sandbox = ctx.pods.store.find(req.podSandboxId);
  if (!sandbox) throw notFound(`pod sandbox ${req.podSandboxId} not found`, { field: 'pod_sandbox_id' });
  if (sandbox.state !== 'SANDBOX_READY') throw failedPrecondition(`pod sandbox ${sandbox.id} is not ready`, { field: 'pod_sandbox_id' });
  const c = ctx.containers;
  const id = randomBytes(32).toString('hex');
  // Before the first await: of two requests for one name, one gets it, the other ALREADY_EXISTS.
  const nameKey = containerNameKey(sandbox.id, config.metadata);
  c.store.reserveName(nameKey, id);
  try {
    return await create(req, ctx, sandbox, id);
  } catch (e: unknown) {
    c.store.releaseName(nameKey, id);
    // The pod stopped or removed meanwhile is the cause, whatever step then failed.
    throw ctx.pods.store.notReadyError(sandbox.id, messageOf(e)) ?? e;
  }
}

async function create(req: CreateContainerRequest__Output, ctx: CriContext, sandbox: SandboxRecord, id: string): Promise<CreateContainerResponse> {
  const config = req.config!;
  const metadata = config.metadata!;
  const imageName = config.image?.image ?? '';
  const c = ctx.containers;
  const image = ctx.images.status(imageName);
  if (!image) throw notFound(`image ${imageName} is not on this node; pull it first`, { field: 'config.image.image' });
  const volumeRoots = parseMountRoots(config.annotations?.[mountRootsAnnotation]);
  /** Image volumes (a mount of an image, read-only): the image each names, by mount index. */
  const volumeImages = new Map<number, NonNullable<ReturnType<typeof ctx.images.status>>>();
  for (const [i, m] of (config.mounts ?? []).entries()) {
    if (!isAbsolute(m.containerPath)) throw invalidArgument(`container_path "${m.containerPath}" must be absolute`, { field: `config.mounts[${i}].container_path` });
    if (m.image?.image) {
      if (!m.readonly) throw invalidArgument('an image volume is read-only: readonly must be set', { field: `config.mounts[${i}].readonly` });
      if (sandbox.userns) throw unimplemented("image volumes in a pod with a user namespace of its own are not supported yet (the image's files are the node's ids)", { field: `config.mounts[${i}].image` });
      const v = ctx.images.status(m.image.image);
      if (!v) throw notFound(`image ${m.image.image} is not on this node; pull it first`, { field: `config.mounts[${i}].image.image` });
      volumeImages.set(i, v);
      continue;
    }
    // A missing host path becomes a folder, as containerd and docker do; one that cannot be is the caller's error.
    // Not inside a volume the node half prepared: it made what should be there, and a
    // folder made now would be made through whatever symlink a container planted.
    if (isAbsolute(m.hostPath) && !volumeRoots.has(m.containerPath)) {
      await stat(m.hostPath).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw invalidArgument(`host_path "${m.hostPath}" cannot be used: ${e.message}`, { field: `config.mounts[${i}].host_path` });
        await mkdir(m.hostPath, { recursive: true, mode: 0o755 }).catch((err: Error) => {
          throw invalidArgument(`host_path "${m.hostPath}" does not exist and cannot be made: ${err.message}`, { field: `config.mounts[${i}].host_path` });
        });
      });
    }
  }

  const log = ctx.log.child('container');
  const undo = new CleanupStack();
  // The images' layers stay while the container is made (image GC skips them) until its record names them.
  const lease = ctx.images.lease([image.id, ...[...volumeImages.values()].map((v) => v.id)], `create ${id.slice(0, 12)}`);
  undo.push('image lease', async () => lease.release());
  try {
    const layers = ctx.images.layerPaths(image);
    const rootfs = await c.rootfs.prepare(id, layers, sandbox.userns);
    undo.push('rootfs', () => c.rootfs.remove(id));
    ctx.crashPoint?.('create_container.rootfs');
    // Image volumes become read-only binds of the image's merged tree (or of a folder in it).
    const mounts = [...(config.mounts ?? [])];
    for (const [i, v] of volumeImages) {
      const m = mounts[i]!;
      const tree = await c.rootfs.prepareImageVolume(id, i, ctx.images.layerPaths(v));
      const sub = posix.normalize(m.imageSubPath || '.');
      if (sub.startsWith('..') || posix.isAbsolute(sub)) throw invalidArgument(`image_sub_path "${m.imageSubPath}" must stay inside the image`, { field: `config.mounts[${i}].image_sub_path` });
      const source = join(tree, sub);
      const st = await stat(source).catch(() => undefined);
      if (!st) throw invalidArgument(`image_sub_path "${m.imageSubPath}" does not exist in image ${m.image!.image}`, { field: `config.mounts[${i}].image_sub_path` });
      mounts[i] = { ...m, hostPath: source, readonly: true, propagation: 'PROPAGATION_PRIVATE', image: null };
    }
    // Every other source is opened beneath its volume (or "/") and its descriptor
    // bound where runc finds it: a path component swapped for a symlink by a
    // container after the checks cannot redirect the mount (mount_sources.ts).
    const pinned = await c.mountSources.pin(
      id,
      mounts.flatMap((m, i) => {
        if (volumeImages.has(i)) return [];
        const volume = volumeRoots.get(m.containerPath);
        return [{ index: i, hostPath: m.hostPath, containerPath: m.containerPath, propagation: m.propagation, ...(volume ? { volume } : {}) }];
      }),
    );
    undo.push('mount sources', () => c.mountSources.release(id));
    for (const [i, path] of pinned) mounts[i] = { ...mounts[i]!, hostPath: path };
    const bundle = join(c.bundlesDir, id);
    await mkdir(bundle, { recursive: true, mode: 0o700 });
    undo.push('bundle', () => rm(bundle, { recursive: true, force: true }));
    ctx.crashPoint?.('create_container.bundle');

    const sandboxConfig = sandbox.config as { linux?: { securityContext?: { namespaceOptions?: { pid?: string } }; sysctls?: Record<string, string> } };
    const termPath = join(bundle, 'termination-log');
    await writeFile(termPath, '', { mode: 0o666 });
    // Pod files and the rootfs as the container's runc (in the pod's user namespace, if it has one) can reach them.
    const paths = sandbox.userns
      ? await c.rootfs.userNamespaceView(id, rootfs, { hosts: sandbox.files.hosts, 'resolv.conf': sandbox.files.resolvConf, hostname: sandbox.files.hostname, 'termination-log': termPath })
      : { rootfs, files: { hosts: sandbox.files.hosts, 'resolv.conf': sandbox.files.resolvConf, hostname: sandbox.files.hostname, 'termination-log': termPath } };
    const { spec, notes } = buildOciSpecWithNotes({
      containerId: id,
      sandboxId: sandbox.id,
      config: { ...config, mounts } as unknown as CriContainerConfig,
      sandbox: {
        hostname: sandbox.hostname,
        ...(sandbox.namespaces.net ? { netnsPath: sandbox.namespaces.net } : {}),
        ipcPath: sandbox.namespaces.ipc,
        utsPath: sandbox.namespaces.uts,
        ...(sandbox.userns ? { userns: { uidMappings: sandbox.userns.uids, gidMappings: sandbox.userns.gids, ...(sandbox.namespaces.user ? { path: sandbox.namespaces.user } : {}) } } : {}),
        pidMode: (sandboxConfig.linux?.securityContext?.namespaceOptions?.pid as 'POD' | 'CONTAINER' | 'NODE' | undefined) ?? 'CONTAINER',
        ...(sandbox.pidNamespace ? { pidPath: `/proc/${sandbox.pidNamespace.pid}/ns/pid` } : {}),
        hostNetwork: sandbox.hostNetwork,
        resolvConfPath: paths.files['resolv.conf']!,
        hostsPath: paths.files.hosts!,
        hostnamePath: paths.files.hostname!,
        sysctls: sandboxConfig.linux?.sysctls ?? {},
      },
      image: image.config,
      rootfsPath: paths.rootfs,
      ...(await optionalText(join(rootfs, 'etc', 'passwd'), 'passwd')),
      ...(await optionalText(join(rootfs, 'etc', 'group'), 'group')),
      cgroups: c.cgroups,
      seccomp: { runtimeDefault: c.seccompDefault, loadLocalhost: localhostProfile },
      terminationMessagePath: paths.files['termination-log']!,
    });
    for (const n of notes) log.warn('not enforced rootless', { container: id.slice(0, 12), note: n });
    await writeFile(join(bundle, 'config.json'), JSON.stringify(spec));
    ctx.crashPoint?.('create_container.spec');

    const logPath = sandbox.logDirectory && config.logPath ? join(sandbox.logDirectory, config.logPath) : join(bundle, 'container.log');
    await mkdir(dirname(logPath), { recursive: true });
    const { pid } = await c.monitor.create({
      id,
      name: metadata.name,
      bundle,
      logPath,
      exitDir: c.exitDir,
      socketDir: c.socketDir,
      terminal: config.tty,
      stdin: config.stdin,
      stdinOnce: config.stdinOnce,
    });
    undo.push('runc container', async () => {
      await c.runtime.delete(id, true);
      await rm(join(c.exitDir, id), { force: true });
    });
    // runc create has made the container's mounts (copies that keep their peer
    // groups): the pinned sources have done their work. Kept, they would make
    // the host paths' submounts busy in the node's mount namespace, where a
    // client (critest) removes its folders.
    await c.mountSources.release(id).catch((e: unknown) => log.warn('pinned mount sources stay until the container is removed', { id: id.slice(0, 12), error: messageOf(e) }));
    ctx.crashPoint?.('create_container.conmon');

    const record: ContainerRecord = {
      id,
      sandboxId: sandbox.id,
      metadata: { name: metadata.name, attempt: metadata.attempt },
      image: imageName,
      imageId: image.id,
      imageRef: image.id,
      labels: config.labels ?? {},
      annotations: config.annotations ?? {},
      state: 'CONTAINER_CREATED',
      createdAt: String(BigInt(Date.now()) * 1000000n),
      startedAt: '0',
      finishedAt: '0',
      exitCode: 0,
      reason: '',
      message: '',
      pid,
      logPath,
      bundle,
      rootfs,
      // The image volumes' layers too: no image removal may take them away while the container exists.
      layers: [...new Set([...image.layers, ...[...volumeImages.values()].flatMap((v) => v.layers)].map((l) => l.chainId))],
      mounts: (config.mounts ?? []).map((m, i) => {
        const v = volumeImages.get(i);
        return { containerPath: m.containerPath, hostPath: v ? '' : m.hostPath, readonly: m.readonly, propagation: m.propagation, ...(v ? { image: m.image!.image, imageRef: v.id } : {}) };
      }),
      stopSignal: image.config.config?.StopSignal ?? 'SIGTERM',
      terminationMessagePath: termPath,
      config,
      user: { uid: spec.process.user.uid, gid: spec.process.user.gid, additionalGids: spec.process.user.additionalGids ?? [] },
    };
    // The pod is re-checked at commit: one stopped or removed meanwhile takes no container.
    await ctx.pods.store.whileReady(sandbox.id, () => c.store.add(record));
    undo.release();
    lease.release();
    ctx.crashPoint?.('create_container.record');
    log.info('container created', { id: id.slice(0, 12), name: metadata.name, pod: sandbox.id.slice(0, 12) });
    return { containerId: id };
  } catch (e: unknown) {
    await undo.unwind((what, err) => log.error('undo failed', { what, error: messageOf(err) }));
    throw e;
  }
}

async function optionalText(path: string, key: 'passwd' | 'group'): Promise<Partial<Record<'passwd' | 'group', string>>> {
  try {
    return { [key]: await readFile(path, 'utf8') };
  } catch {
    return {};
  }
}

/** Localhost seccomp profiles are small files the operator placed; the pure spec builder reads them through this. */
function localhostProfile(path: string): object {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as object;
  } catch (e: unknown) {
    throw invalidArgument(`seccomp profile ${path} cannot be read: ${messageOf(e)}`, { field: 'config.linux.security_context.seccomp.localhost_ref' });
  }
}
