import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, posix } from 'node:path';

import type { CreateContainerRequest__Output, CreateContainerResponse } from '../../proto/types.js';
import { alreadyExists, failedPrecondition, invalidArgument, messageOf, notFound, unimplemented } from '../errdefs/errors.js';
import { buildOciSpecWithNotes, type CriContainerConfig } from '../sandbox/oci_spec.js';
import type { ContainerRecord } from '../sandbox/container_store.js';
import { CleanupStack } from './cleanup_stack.js';
import type { CriContext } from './context.js';
import { checkContainerConfig } from './validate.js';

// CreateContainer: the image's layers under a rootfs of the container's own,
// an OCI spec joining the pod's namespaces, and the container created (not
// started) by runc under conmon, which outlives the agent. A failure midway
// leaves no mount, bundle or process.

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
  const clash = c.store.list().find((o) => o.sandboxId === sandbox.id && o.metadata.name === config.metadata!.name && o.metadata.attempt === config.metadata!.attempt);
  if (clash) throw alreadyExists(`container ${config.metadata.name} (attempt ${config.metadata.attempt}) already exists in this pod (${clash.id})`, { field: 'config.metadata' });
  const image = ctx.images.status(imageName);
  if (!image) throw notFound(`image ${imageName} is not on this node; pull it first`, { field: 'config.image.image' });
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
    if (isAbsolute(m.hostPath)) {
      await stat(m.hostPath).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== 'ENOENT') throw invalidArgument(`host_path "${m.hostPath}" cannot be used: ${e.message}`, { field: `config.mounts[${i}].host_path` });
        await mkdir(m.hostPath, { recursive: true, mode: 0o755 }).catch((err: Error) => {
          throw invalidArgument(`host_path "${m.hostPath}" does not exist and cannot be made: ${err.message}`, { field: `config.mounts[${i}].host_path` });
        });
      });
    }
  }

  const id = randomBytes(32).toString('hex');
  const log = ctx.log.child('container');
  const undo = new CleanupStack();
  try {
    const layers = ctx.images.layerPaths(image);
    const rootfs = await c.rootfs.prepare(id, layers, sandbox.userns);
    undo.push('rootfs', () => c.rootfs.remove(id));
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
    const bundle = join(c.bundlesDir, id);
    await mkdir(bundle, { recursive: true, mode: 0o700 });
    undo.push('bundle', () => rm(bundle, { recursive: true, force: true }));

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

    const logPath = sandbox.logDirectory && config.logPath ? join(sandbox.logDirectory, config.logPath) : join(bundle, 'container.log');
    await mkdir(dirname(logPath), { recursive: true });
    const { pid } = await c.monitor.create({
      id,
      name: config.metadata.name,
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

    const record: ContainerRecord = {
      id,
      sandboxId: sandbox.id,
      metadata: { name: config.metadata.name, attempt: config.metadata.attempt },
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
    await c.store.add(record);
    undo.release();
    log.info('container created', { id: id.slice(0, 12), name: config.metadata.name, pod: sandbox.id.slice(0, 12) });
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
