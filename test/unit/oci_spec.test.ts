import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { isDomainError } from '../../pkg/errdefs/errors.js';
import type { ImageConfig } from '../../pkg/image/media_types.js';
import {
  allCapabilities,
  buildOciSpec,
  buildOciSpecWithNotes,
  type CriContainerConfig,
  type CriLinuxContainerSecurityContext,
  type CriMount,
  defaultCapabilities,
  defaultMaskedPaths,
  defaultPathEnv,
  defaultReadonlyPaths,
  type OciMount,
  type OciSpec,
  parseGroup,
  parsePasswd,
  type SandboxForSpec,
  type SpecInput,
} from '../../pkg/sandbox/oci_spec.js';

// The config.json runc gets for a CRI container: what the pod's author wrote
// (command, env, user, mounts, security context) must land where runc reads
// it, the way containerd's CRI plugin puts it, and whatever a user namespace
// cannot do must be left out (or reported) rather than fail inside runc.

const runtimeDefaultProfile = { defaultAction: 'SCMP_ACT_ERRNO', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW' }] };
const runtimeDefault = (): object => runtimeDefaultProfile;

const passwd = ['root:x:0:0:root:/root:/bin/sh', 'daemon:x:1:1::/:/bin/false', '# a comment', 'app:x:1000:1001:App:/home/app:/bin/sh', 'nobody:x:65534:65534::/:/bin/false', 'big:x:70000:70000::/:/bin/false'].join('\n');
const group = ['root:x:0:', 'daemon:x:1:app', 'app:x:1001:app', 'wheel:x:10:root,app', 'audio:x:29:other', 'nogroup:x:65534:', 'huge:x:80000:app2'].join('\n');

function image(config: ImageConfig['config'] = {}): ImageConfig {
  return { architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'], ...config }, rootfs: { type: 'layers', diff_ids: [] } };
}

function sandbox(over: Partial<SandboxForSpec> = {}): SandboxForSpec {
  return {
    hostname: 'web-1',
    netnsPath: '/run/user/1000/usernode/netns/pod1',
    ipcPath: '/run/user/1000/usernode/ns/pod1/ipc',
    utsPath: '/run/user/1000/usernode/ns/pod1/uts',
    pidMode: 'CONTAINER',
    hostNetwork: false,
    resolvConfPath: '/data/pods/pod1/resolv.conf',
    hostsPath: '/data/pods/pod1/hosts',
    hostnamePath: '/data/pods/pod1/hostname',
    shmPath: '/run/user/1000/usernode/pods/pod1/shm',
    sysctls: {},
    ...over,
  };
}

function config(over: Partial<CriContainerConfig> = {}): CriContainerConfig {
  return {
    metadata: { name: 'web', attempt: 0 },
    image: { image: 'sha256:abc', userSpecifiedImage: 'registry.test/web:1' },
    command: [],
    args: [],
    workingDir: '',
    envs: [],
    mounts: [],
    labels: {},
    annotations: {},
    tty: false,
    linux: { resources: null, securityContext: null },
    ...over,
  };
}

function withSc(sc: CriLinuxContainerSecurityContext, over: Partial<CriContainerConfig> = {}): CriContainerConfig {
  return config({ linux: { resources: null, securityContext: sc }, ...over });
}

function input(over: Partial<SpecInput> = {}): SpecInput {
  return {
    containerId: 'c0ffee',
    sandboxId: 'pod1',
    config: config(),
    sandbox: sandbox(),
    image: image(),
    rootfsPath: '/data/containers/c0ffee/rootfs',
    passwd,
    group,
    cgroups: { canEnforceLimits: false },
    seccomp: { runtimeDefault, loadLocalhost: (p) => ({ defaultAction: 'SCMP_ACT_LOG', path: p }) },
    ...over,
  };
}

const build = (over: Partial<SpecInput> = {}): OciSpec => buildOciSpec(input(over));

/** Asserts that building throws a DomainError with `code` naming `field`. */
function rejects(over: Partial<SpecInput>, field: string, code = 'InvalidArgument', mention?: RegExp): void {
  assert.throws(
    () => build(over),
    (e: unknown) => {
      assert.ok(isDomainError(e), `not a DomainError: ${String(e)}`);
      assert.equal(e.code, code);
      assert.equal(e.field, field);
      if (mention) assert.match(e.message, mention);
      return true;
    },
  );
}

const mountAt = (spec: OciSpec, destination: string): OciMount | undefined => spec.mounts.find((m) => m.destination === destination);
const mountsAt = (spec: OciSpec, destination: string): OciMount[] => spec.mounts.filter((m) => m.destination === destination);
const envOf = (spec: OciSpec, key: string): string[] => spec.process.env.filter((e) => e.startsWith(`${key}=`));

describe('the spec frame', () => {
  test('version, root, terminal and the CRI annotations', () => {
    const spec = build({ config: config({ tty: true, annotations: { 'example.com/a': '1', [`io.kubernetes.cri.container-type`]: 'sandbox' } }) });
    assert.equal(spec.ociVersion, '1.0.2');
    assert.deepEqual(spec.root, { path: '/data/containers/c0ffee/rootfs', readonly: false });
    assert.equal(spec.process.terminal, true);
    assert.deepEqual(spec.annotations, {
      'example.com/a': '1',
      'io.kubernetes.cri.container-type': 'container',
      'io.kubernetes.cri.sandbox-id': 'pod1',
      'io.kubernetes.cri.container-name': 'web',
      'io.kubernetes.cri.image-name': 'registry.test/web:1',
    });
    assert.equal(build().process.terminal, false);
  });

  test('image-name falls back to the image field; the spec is plain JSON', () => {
    const spec = build({ config: config({ image: { image: 'docker.io/library/busybox:latest' } }) });
    assert.equal(spec.annotations['io.kubernetes.cri.image-name'], 'docker.io/library/busybox:latest');
    assert.deepEqual(JSON.parse(JSON.stringify(spec)), spec);
  });

  test('a container without a name, or a relative rootfs, is refused', () => {
    rejects({ config: config({ metadata: null }) }, 'config.metadata.name');
    rejects({ rootfsPath: 'rootfs' }, 'rootfsPath');
  });

  test('readonly_rootfs makes the root read-only and the pod files with it', () => {
    const spec = build({ config: withSc({ readonlyRootfs: true }) });
    assert.equal(spec.root.readonly, true);
    assert.deepEqual(mountAt(spec, '/etc/hosts')?.options, ['rbind', 'rprivate', 'ro']);
    assert.deepEqual(mountAt(spec, '/dev/shm')?.options, ['rbind', 'rprivate', 'rw']);
  });
});

describe('process.args (Kubernetes command/args semantics)', () => {
  const ep = image({ Entrypoint: ['/entry'], Cmd: ['--default'] });
  test('neither command nor args: ENTRYPOINT + CMD', () => {
    assert.deepEqual(build({ image: ep }).process.args, ['/entry', '--default']);
  });
  test('args only replace CMD', () => {
    assert.deepEqual(build({ image: ep, config: config({ args: ['--mine'] }) }).process.args, ['/entry', '--mine']);
  });
  test('command replaces ENTRYPOINT and drops CMD', () => {
    assert.deepEqual(build({ image: ep, config: config({ command: ['/bin/sh'] }) }).process.args, ['/bin/sh']);
  });
  test('command and args: both, nothing from the image', () => {
    assert.deepEqual(build({ image: ep, config: config({ command: ['/bin/sh'], args: ['-c', 'true'] }) }).process.args, ['/bin/sh', '-c', 'true']);
  });
  test('an ENTRYPOINT of [""] counts as none; null CMD and ENTRYPOINT are empty', () => {
    assert.deepEqual(build({ image: image({ Entrypoint: [''], Cmd: ['top'] }) }).process.args, ['top']);
    assert.deepEqual(build({ image: image({ Entrypoint: null, Cmd: ['top'] }) }).process.args, ['top']);
    assert.deepEqual(build({ image: image({ Entrypoint: ['/e'], Cmd: null }) }).process.args, ['/e']);
  });
  test('no command anywhere is InvalidArgument naming config.command', () => {
    rejects({ image: image({ Cmd: null }) }, 'config.command');
    rejects({ image: image({ Entrypoint: [''], Cmd: [] }) }, 'config.command');
  });
});

describe('process.env', () => {
  test('PATH default, HOSTNAME from the sandbox, image Env, then CRI envs (CRI wins in place)', () => {
    const spec = build({
      image: image({ Env: ['A=image', 'B=image'] }),
      config: config({ envs: [{ key: 'B', value: 'cri' }, { key: 'C', value: Buffer.from('bytes') }] }),
    });
    assert.deepEqual(spec.process.env, [defaultPathEnv, 'HOSTNAME=web-1', 'A=image', 'B=cri', 'C=bytes']);
    assert.deepEqual(envOf(build({ sandbox: sandbox({ hostname: '' }) }), 'HOSTNAME'), [], 'no hostname, no HOSTNAME');
  });
  test("the image's PATH replaces the default; a CRI PATH replaces both", () => {
    const spec = build({ image: image({ Env: ['PATH=/opt/bin'] }) });
    assert.deepEqual(envOf(spec, 'PATH'), ['PATH=/opt/bin']);
    assert.equal(spec.process.env[0], 'PATH=/opt/bin');
    const spec2 = build({ image: image({ Env: ['PATH=/opt/bin'] }), config: config({ envs: [{ key: 'PATH', value: '/cri' }] }) });
    assert.deepEqual(envOf(spec2, 'PATH'), ['PATH=/cri']);
  });
  test('values keep their "=" and an empty value stays set', () => {
    const spec = build({ config: config({ envs: [{ key: 'Q', value: 'a=b' }, { key: 'E', value: '' }] }) });
    assert.deepEqual(envOf(spec, 'Q'), ['Q=a=b']);
    assert.deepEqual(envOf(spec, 'E'), ['E=']);
  });
  test('an env with an empty name is InvalidArgument naming it', () => {
    rejects({ config: config({ envs: [{ key: 'OK', value: '1' }, { key: '', value: 'x' }] }) }, 'config.envs[1].key');
  });
});

describe('process.cwd', () => {
  test('CRI working_dir, else image WorkingDir, else /', () => {
    assert.equal(build({ image: image({ WorkingDir: '/srv' }), config: config({ workingDir: '/work' }) }).process.cwd, '/work');
    assert.equal(build({ image: image({ WorkingDir: '/srv' }) }).process.cwd, '/srv');
    assert.equal(build().process.cwd, '/');
  });
  test('a relative CRI working_dir is refused', () => {
    rejects({ config: config({ workingDir: 'work' }) }, 'config.workingDir');
  });
});

describe('process.user', () => {
  const user = (over: Partial<SpecInput>): OciSpec['process']['user'] => build(over).process.user;

  test('default: root with the groups root is a member of', () => {
    assert.deepEqual(user({}), { uid: 0, gid: 0, additionalGids: [0, 10] });
  });
  test('run_as_user: gid and groups from the image passwd/group', () => {
    assert.deepEqual(user({ config: withSc({ runAsUser: { value: '1000' } }) }), { uid: 1000, gid: 1001, additionalGids: [1, 10, 1001] });
  });
  test('run_as_user not in passwd: gid 0, no groups', () => {
    assert.deepEqual(user({ config: withSc({ runAsUser: { value: '4242' } }) }), { uid: 4242, gid: 0, additionalGids: [0] });
  });
  test('run_as_group overrides the passwd gid', () => {
    assert.deepEqual(user({ config: withSc({ runAsUser: { value: '1000' }, runAsGroup: { value: '2000' } }) }), { uid: 1000, gid: 2000, additionalGids: [1, 10, 2000] });
  });
  test('run_as_username resolves through the image passwd and wins over run_as_user', () => {
    assert.deepEqual(user({ config: withSc({ runAsUsername: 'app', runAsUser: { value: '5' } }) }), { uid: 1000, gid: 1001, additionalGids: [1, 10, 1001] });
  });
  test('an unknown run_as_username is InvalidArgument naming the field', () => {
    rejects({ config: withSc({ runAsUsername: 'ghost' }) }, 'config.linux.securityContext.runAsUsername', 'InvalidArgument', /ghost/);
    rejects({ config: withSc({ runAsUsername: 'app' }), passwd: undefined }, 'config.linux.securityContext.runAsUsername', 'InvalidArgument', /has none/);
  });
  test('run_as_group without a user is refused (containerd, critest)', () => {
    rejects({ config: withSc({ runAsGroup: { value: '10' } }) }, 'config.linux.securityContext.runAsGroup');
  });
  test('image USER: uid, uid:gid, name, name:group', () => {
    assert.deepEqual(user({ image: image({ User: '1000' }) }), { uid: 1000, gid: 1001, additionalGids: [1, 10, 1001] });
    assert.deepEqual(user({ image: image({ User: '1000:29' }) }), { uid: 1000, gid: 29, additionalGids: [1, 10, 29] });
    assert.deepEqual(user({ image: image({ User: 'app' }) }), { uid: 1000, gid: 1001, additionalGids: [1, 10, 1001] });
    assert.deepEqual(user({ image: image({ User: 'app:audio' }) }), { uid: 1000, gid: 29, additionalGids: [1, 10, 29] });
    assert.deepEqual(user({ image: image({ User: 'daemon:0' }) }), { uid: 1, gid: 0, additionalGids: [0] });
  });
  test('the security context wins over the image USER', () => {
    assert.deepEqual(user({ image: image({ User: 'app' }), config: withSc({ runAsUser: { value: '0' } }) }), { uid: 0, gid: 0, additionalGids: [0, 10] });
  });
  test('unknown image user or group, or a malformed USER, is InvalidArgument naming image.config.User', () => {
    rejects({ image: image({ User: 'ghost' }) }, 'image.config.User', 'InvalidArgument', /ghost/);
    rejects({ image: image({ User: 'app:ghosts' }) }, 'image.config.User', 'InvalidArgument', /ghosts/);
    rejects({ image: image({ User: 'app:audio' }), group: undefined }, 'image.config.User');
    rejects({ image: image({ User: 'a:b:c' }) }, 'image.config.User');
    rejects({ image: image({ User: ':0' }) }, 'image.config.User');
  });
  test('supplemental_groups are added (Merge, the default) and kept alone with Strict', () => {
    assert.deepEqual(user({ config: withSc({ runAsUser: { value: '1000' }, supplementalGroups: ['3000', '10'] }) }).additionalGids, [1, 10, 1001, 3000]);
    assert.deepEqual(user({ config: withSc({ runAsUser: { value: '1000' }, supplementalGroups: ['3000'], supplementalGroupsPolicy: 'Merge' }) }).additionalGids, [1, 10, 1001, 3000]);
    assert.deepEqual(user({ config: withSc({ runAsUser: { value: '1000' }, supplementalGroups: ['3000'], supplementalGroupsPolicy: 'Strict' }) }).additionalGids, [1001, 3000]);
  });
  test('ids outside the node range 0..65535 are InvalidArgument naming the field', () => {
    rejects({ config: withSc({ runAsUser: { value: '65536' } }) }, 'config.linux.securityContext.runAsUser', 'InvalidArgument', /65536.*0\.\.65535/);
    rejects({ config: withSc({ runAsUser: { value: '-1' } }) }, 'config.linux.securityContext.runAsUser');
    rejects({ config: withSc({ runAsUser: { value: '1000' }, runAsGroup: { value: '70000' } }) }, 'config.linux.securityContext.runAsGroup');
    rejects({ config: withSc({ runAsUser: { value: '0' }, supplementalGroups: ['5', '99999'] }) }, 'config.linux.securityContext.supplementalGroups[1]');
    rejects({ config: withSc({ runAsUsername: 'big' }) }, 'config.linux.securityContext.runAsUsername');
    rejects({ image: image({ User: '1000:70000' }) }, 'image.config.User');
    assert.equal(user({ config: withSc({ runAsUser: { value: '65535' }, runAsGroup: { value: '65535' } }) }).uid, 65535);
  });
  test('in a pod user namespace the ids are checked against its mappings', () => {
    const userns = { uidMappings: [{ containerId: 0, hostId: 100000, length: 1000 }], gidMappings: [{ containerId: 0, hostId: 100000, length: 2000 }] };
    assert.deepEqual(user({ sandbox: sandbox({ userns }), config: withSc({ runAsUser: { value: '999' }, runAsGroup: { value: '1999' } }) }), { uid: 999, gid: 1999, additionalGids: [1999] });
    rejects({ sandbox: sandbox({ userns }), config: withSc({ runAsUser: { value: '1000' } }) }, 'config.linux.securityContext.runAsUser', 'InvalidArgument', /0\.\.999/);
  });
  test('passwd and group parsing skips comments and malformed lines', () => {
    assert.deepEqual(parsePasswd('root:x:0:0::/:/bin/sh\n#x:x:1:1\nbad:x:y:0\nshort:x\n'), [{ name: 'root', uid: 0, gid: 0 }]);
    assert.deepEqual(parseGroup('wheel:x:10:a,b\nempty:x:11:\nbad:x:q:'), [
      { name: 'wheel', gid: 10, members: ['a', 'b'] },
      { name: 'empty', gid: 11, members: [] },
    ]);
    assert.deepEqual(parsePasswd(undefined), []);
  });
});

describe('mounts', () => {
  test('the default set for a pod with its own namespaces', () => {
    const spec = build({ sandbox: sandbox({ shmPath: undefined }) });
    assert.deepEqual(spec.mounts.slice(0, 6), [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'] },
      { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
      { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ]);
    assert.equal(mountAt(spec, '/sys/fs/cgroup'), undefined, 'no cgroup mount without a delegated cgroup');
    assert.equal(mountAt(spec, '/run'), undefined, 'no /run tmpfs (containerd WithoutRunMount)');
  });

  test('/dev/shm is the sandbox shm when it has one', () => {
    const spec = build();
    assert.deepEqual(mountsAt(spec, '/dev/shm'), [{ destination: '/dev/shm', type: 'bind', source: '/run/user/1000/usernode/pods/pod1/shm', options: ['rbind', 'rprivate', 'rw'] }]);
  });

  test('/sys/fs/cgroup is a read-only cgroup mount when cgroups are delegated', () => {
    const spec = build({ cgroups: { canEnforceLimits: true } });
    assert.deepEqual(mountAt(spec, '/sys/fs/cgroup'), { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] });
  });

  test('hostNetwork keeps sysfs (the node netns is the node user namespace\'s); from a pod user namespace /sys is a read-only bind', () => {
    assert.equal(mountAt(build({ sandbox: sandbox({ hostNetwork: true, netnsPath: undefined }) }), '/sys')?.type, 'sysfs');
    assert.equal(mountAt(build({ sandbox: sandbox({ userns: { uidMappings: [{ containerId: 0, hostId: 1, length: 65536 }], gidMappings: [{ containerId: 0, hostId: 1, length: 65536 }] } }) }), '/sys')?.type, 'sysfs');
    const spec = build({ sandbox: sandbox({ hostNetwork: true, netnsPath: undefined, userns: { uidMappings: [{ containerId: 0, hostId: 1, length: 65536 }], gidMappings: [{ containerId: 0, hostId: 1, length: 65536 }] } }) });
    assert.deepEqual(mountAt(spec, '/sys'), { destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'rro', 'nosuid', 'nodev', 'noexec'] });
  });

  test("hostPID binds the node /proc; hostIPC has no /dev/mqueue (neither fs mounts from a user namespace in the host's namespaces)", () => {
    const spec = build({ sandbox: sandbox({ pidMode: 'NODE', ipcPath: undefined }) });
    assert.deepEqual(mountAt(spec, '/proc'), { destination: '/proc', type: 'bind', source: '/proc', options: ['rbind', 'nosuid', 'noexec', 'nodev'] });
    assert.equal(mountAt(spec, '/dev/mqueue'), undefined);
    assert.equal(mountAt(build({ sandbox: sandbox({ pidMode: 'POD' }) }), '/proc')?.type, 'proc');
  });

  test('pod files: /etc/hostname, /etc/hosts, /etc/resolv.conf', () => {
    const spec = build();
    assert.deepEqual(mountAt(spec, '/etc/hostname'), { destination: '/etc/hostname', type: 'bind', source: '/data/pods/pod1/hostname', options: ['rbind', 'rprivate', 'rw'] });
    assert.deepEqual(mountAt(spec, '/etc/hosts'), { destination: '/etc/hosts', type: 'bind', source: '/data/pods/pod1/hosts', options: ['rbind', 'rprivate', 'rw'] });
    assert.deepEqual(mountAt(spec, '/etc/resolv.conf'), { destination: '/etc/resolv.conf', type: 'bind', source: '/data/pods/pod1/resolv.conf', options: ['rbind', 'rprivate', 'rw'] });
  });

  test('a CRI mount on a pod file or default mount replaces it', () => {
    const spec = build({ config: config({ mounts: [{ containerPath: '/etc/hosts/', hostPath: '/kubelet/etc-hosts' }, { containerPath: '/dev/shm', hostPath: '/my/shm' }, { containerPath: '/sys', hostPath: '/sys', readonly: true }] }) });
    assert.deepEqual(mountsAt(spec, '/etc/hosts'), [{ destination: '/etc/hosts', type: 'bind', source: '/kubelet/etc-hosts', options: ['rbind', 'rprivate', 'rw'] }]);
    assert.deepEqual(mountsAt(spec, '/dev/shm').map((m) => m.source), ['/my/shm']);
    assert.deepEqual(mountsAt(spec, '/sys').map((m) => m.type), ['bind']);
  });

  test('a CRI /dev drops every default mount under /dev', () => {
    const spec = build({ sandbox: sandbox({ shmPath: undefined }), config: config({ mounts: [{ containerPath: '/dev', hostPath: '/dev' }] }) });
    assert.deepEqual(
      spec.mounts.filter((m) => m.destination.startsWith('/dev')).map((m) => [m.destination, m.type]),
      [['/dev', 'bind']],
    );
  });

  test('the termination message file binds to the path kubelet names, else /dev/termination-log', () => {
    const spec = build({ terminationMessagePath: '/data/pods/pod1/web/termlog' });
    assert.deepEqual(mountAt(spec, '/dev/termination-log'), { destination: '/dev/termination-log', type: 'bind', source: '/data/pods/pod1/web/termlog', options: ['rbind', 'rprivate', 'rw'] });
    const custom = build({ terminationMessagePath: '/t', config: config({ annotations: { 'io.kubernetes.container.terminationMessagePath': '/tmp/msg' } }) });
    assert.equal(mountAt(custom, '/tmp/msg')?.source, '/t');
    assert.equal(mountAt(custom, '/dev/termination-log'), undefined);
    const covered = build({ terminationMessagePath: '/t', config: config({ mounts: [{ containerPath: '/dev/termination-log', hostPath: '/kubelet/termlog' }] }) });
    assert.deepEqual(mountsAt(covered, '/dev/termination-log').map((m) => m.source), ['/kubelet/termlog']);
    assert.equal(mountAt(build(), '/dev/termination-log'), undefined);
  });

  test('CRI binds: rbind, ro/rw and propagation; rootfs propagation follows (containerd)', () => {
    const mounts: CriMount[] = [
      { containerPath: '/a', hostPath: '/h/a', readonly: true, propagation: 'PROPAGATION_PRIVATE', selinuxRelabel: true },
      { containerPath: '/b', hostPath: '/h/b', propagation: 'PROPAGATION_HOST_TO_CONTAINER' },
      { containerPath: '/c', hostPath: '/h/c' },
      { containerPath: '/r', hostPath: '/h/r', readonly: true, recursiveReadOnly: true },
    ];
    const spec = build({ config: config({ mounts }) });
    assert.deepEqual(mountAt(spec, '/a'), { destination: '/a', type: 'bind', source: '/h/a', options: ['rbind', 'rprivate', 'ro'] });
    assert.deepEqual(mountAt(spec, '/b')?.options, ['rbind', 'rslave', 'rw']);
    assert.deepEqual(mountAt(spec, '/c')?.options, ['rbind', 'rprivate', 'rw']);
    assert.deepEqual(mountAt(spec, '/r')?.options, ['rbind', 'rprivate', 'rro']);
    assert.equal(spec.linux.rootfsPropagation, 'rslave');
    const shared = build({ config: config({ mounts: [{ containerPath: '/s', hostPath: '/h/s', propagation: 'PROPAGATION_BIDIRECTIONAL' }, ...mounts] }) });
    assert.deepEqual(mountAt(shared, '/s')?.options, ['rbind', 'rshared', 'rw']);
    assert.equal(shared.linux.rootfsPropagation, 'rshared');
    assert.equal(build().linux.rootfsPropagation, undefined);
  });

  test('mounts are ordered parents first, stable among equals, after the defaults', () => {
    const spec = build({
      config: config({
        mounts: [
          { containerPath: '/data/a/b', hostPath: '/h/3' },
          { containerPath: '/data', hostPath: '/h/1' },
          { containerPath: '/data/a', hostPath: '/h/2' },
          { containerPath: '/other', hostPath: '/h/4' },
        ],
      }),
    });
    const dests = spec.mounts.map((m) => m.destination);
    assert.deepEqual(dests.slice(0, 6), ['/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/data']);
    const idx = (d: string): number => dests.indexOf(d);
    assert.ok(idx('/data') < idx('/data/a') && idx('/data/a') < idx('/data/a/b'), dests.join(' '));
    assert.ok(idx('/data') < idx('/other'), 'equal depth keeps the request order');
    assert.ok(idx('/etc/hosts') > idx('/other') && idx('/etc/hosts') < idx('/data/a/b'), 'pod files sort by depth with the request mounts');
    for (const d of ['/dev/shm', '/etc/hostname', '/etc/hosts', '/etc/resolv.conf']) assert.ok(idx(d) >= 0, d);
  });

  test('a relative container_path, an empty host_path or an image volume is refused naming the mount', () => {
    rejects({ config: config({ mounts: [{ containerPath: '/ok', hostPath: '/h' }, { containerPath: 'rel', hostPath: '/h' }] }) }, 'config.mounts[1]', 'InvalidArgument', /rel/);
    rejects({ config: config({ mounts: [{ containerPath: '/x', hostPath: '' }] }) }, 'config.mounts[0]', 'InvalidArgument', /host_path/);
    rejects({ config: config({ mounts: [{ containerPath: '', hostPath: '/h' }] }) }, 'config.mounts[0]');
    rejects({ config: config({ mounts: [{ containerPath: '/x', hostPath: '', image: { image: 'busybox' } }] }) }, 'config.mounts[0]', 'Unimplemented');
    rejects({ config: config({ mounts: [{ containerPath: '/x', hostPath: '/h', recursiveReadOnly: true }] }) }, 'config.mounts[0]');
    rejects({ config: config({ mounts: [{ containerPath: '/x', hostPath: '/h', readonly: true, recursiveReadOnly: true, propagation: 'PROPAGATION_HOST_TO_CONTAINER' }] }) }, 'config.mounts[0]');
    rejects({ config: config({ mounts: [{ containerPath: '/x', hostPath: '/h', uidMappings: [{ containerId: 0, hostId: 1, length: 1 }] }] }) }, 'config.mounts[0]', 'Unimplemented');
  });

  test('image volumes are not created, and the note says so', () => {
    const { spec, notes } = buildOciSpecWithNotes(input({ image: image({ Volumes: { '/var/lib/data': {}, '/covered': {} } }), config: config({ mounts: [{ containerPath: '/covered', hostPath: '/h' }] }) }));
    assert.equal(mountAt(spec, '/var/lib/data'), undefined);
    assert.equal(notes.filter((n) => n.includes('/var/lib/data')).length, 1);
    assert.equal(notes.filter((n) => n.includes('/covered')).length, 0);
  });

  test('CRI devices become binds of the node device, with a note that permissions are not enforced', () => {
    const { spec, notes } = buildOciSpecWithNotes(input({ config: config({ devices: [{ containerPath: '/dev/fuse', hostPath: '/dev/fuse', permissions: 'rwm' }] }) }));
    assert.deepEqual(mountAt(spec, '/dev/fuse'), { destination: '/dev/fuse', type: 'bind', source: '/dev/fuse', options: ['rbind', 'rprivate', 'rw'] });
    assert.ok(notes.some((n) => n.includes('/dev/fuse')));
    rejects({ config: config({ devices: [{ containerPath: 'fuse', hostPath: '/dev/fuse', permissions: 'rwm' }] }) }, 'config.devices[0]');
  });
});

describe('namespaces', () => {
  const ns = (spec: OciSpec): Array<[string, string | undefined]> => spec.linux.namespaces.map((n) => [n.type, n.path]);

  test("a pod container joins the pod's network, IPC and UTS namespaces and gets its own pid and mount", () => {
    assert.deepEqual(ns(build()), [
      ['pid', undefined],
      ['ipc', '/run/user/1000/usernode/ns/pod1/ipc'],
      ['uts', '/run/user/1000/usernode/ns/pod1/uts'],
      ['mount', undefined],
      ['network', '/run/user/1000/usernode/netns/pod1'],
    ]);
  });
  test('POD pid mode gets a new pid namespace for now; NODE none', () => {
    assert.ok(ns(build({ sandbox: sandbox({ pidMode: 'POD' }) })).some(([t, p]) => t === 'pid' && p === undefined));
    assert.ok(!ns(build({ sandbox: sandbox({ pidMode: 'NODE' }) })).some(([t]) => t === 'pid'));
  });
  test("hostNetwork has no network entry (the node's), and no netns without hostNetwork is refused", () => {
    assert.ok(!ns(build({ sandbox: sandbox({ hostNetwork: true, netnsPath: undefined }) })).some(([t]) => t === 'network'));
    assert.ok(!ns(build({ sandbox: sandbox({ hostNetwork: true }) })).some(([t]) => t === 'network'), 'hostNetwork wins over a stale path');
    rejects({ sandbox: sandbox({ netnsPath: undefined }) }, 'sandbox.netnsPath', 'FailedPrecondition');
  });
  test('no ipc or uts path: the node ones', () => {
    const types = ns(build({ sandbox: sandbox({ ipcPath: undefined, utsPath: undefined }) })).map(([t]) => t);
    assert.deepEqual(types, ['pid', 'mount', 'network']);
  });
  test('a pod user namespace: the user entry (path when given) and its mappings', () => {
    const userns = { uidMappings: [{ containerId: 0, hostId: 200000, length: 65536 }], gidMappings: [{ containerId: 0, hostId: 300000, length: 65536 }] };
    const spec = build({ sandbox: sandbox({ userns }) });
    assert.deepEqual(spec.linux.namespaces.find((n) => n.type === 'user'), { type: 'user' });
    assert.deepEqual(spec.linux.uidMappings, [{ containerID: 0, hostID: 200000, size: 65536 }]);
    assert.deepEqual(spec.linux.gidMappings, [{ containerID: 0, hostID: 300000, size: 65536 }]);
    const joined = build({ sandbox: sandbox({ userns: { ...userns, path: '/run/ns/pod1/user' } }) });
    assert.deepEqual(joined.linux.namespaces.find((n) => n.type === 'user'), { type: 'user', path: '/run/ns/pod1/user' });
    assert.deepEqual(joined.linux.uidMappings, [{ containerID: 0, hostID: 200000, size: 65536 }], 'runc 1.1 needs the mappings even when joining');
    const plain = build();
    assert.ok(!plain.linux.namespaces.some((n) => n.type === 'user'));
    assert.equal(plain.linux.uidMappings, undefined);
  });
  test('a cgroup namespace only with delegated cgroups, and not for privileged containers', () => {
    assert.ok(!build().linux.namespaces.some((n) => n.type === 'cgroup'));
    assert.ok(build({ cgroups: { canEnforceLimits: true } }).linux.namespaces.some((n) => n.type === 'cgroup'));
    assert.ok(!build({ cgroups: { canEnforceLimits: true }, config: withSc({ privileged: true }) }).linux.namespaces.some((n) => n.type === 'cgroup'));
  });
});

describe('capabilities', () => {
  const caps = (sc: CriLinuxContainerSecurityContext): string[] => build({ config: withSc(sc) }).process.capabilities.bounding;

  test('the containerd default set in bounding, effective and permitted; inheritable and ambient empty', () => {
    const c = build().process.capabilities;
    assert.deepEqual(c.bounding, [...defaultCapabilities]);
    assert.deepEqual(c.effective, [...defaultCapabilities]);
    assert.deepEqual(c.permitted, [...defaultCapabilities]);
    assert.deepEqual(c.inheritable, []);
    assert.deepEqual(c.ambient, []);
    assert.equal(defaultCapabilities.length, 14);
  });
  test('add and drop, with or without CAP_, any case', () => {
    const c = caps({ capabilities: { addCapabilities: ['SYS_ADMIN', 'cap_net_admin'], dropCapabilities: ['CAP_MKNOD', 'net_raw'] } });
    assert.ok(c.includes('CAP_SYS_ADMIN') && c.includes('CAP_NET_ADMIN'));
    assert.ok(!c.includes('CAP_MKNOD') && !c.includes('CAP_NET_RAW'));
    assert.equal(c.length, 14);
    const full = build({ config: withSc({ capabilities: { addCapabilities: ['SYS_PTRACE'] } }) }).process.capabilities;
    assert.deepEqual(full.effective, full.bounding);
    assert.deepEqual(full.permitted, full.bounding);
  });
  test('ALL both ways: add ALL minus a drop; drop ALL plus an add', () => {
    const all = caps({ capabilities: { addCapabilities: ['ALL'], dropCapabilities: ['CHOWN'] } });
    assert.deepEqual(all, allCapabilities.filter((c) => c !== 'CAP_CHOWN'));
    assert.deepEqual(caps({ capabilities: { dropCapabilities: ['all'], addCapabilities: ['NET_BIND_SERVICE'] } }), ['CAP_NET_BIND_SERVICE']);
    assert.deepEqual(caps({ capabilities: { dropCapabilities: ['ALL'] } }), []);
  });
  test('an unknown capability is InvalidArgument naming its index', () => {
    rejects({ config: withSc({ capabilities: { addCapabilities: ['CHOWN', 'FLY'] } }) }, 'config.linux.securityContext.capabilities.addCapabilities[1]', 'InvalidArgument', /FLY/);
    rejects({ config: withSc({ capabilities: { dropCapabilities: ['NOPE'] } }) }, 'config.linux.securityContext.capabilities.dropCapabilities[0]');
  });
  test('ambient capabilities are never set (as containerd), with a note', () => {
    const { spec, notes } = buildOciSpecWithNotes(input({ config: withSc({ capabilities: { addAmbientCapabilities: ['NET_BIND_SERVICE'] } }) }));
    assert.deepEqual(spec.process.capabilities.ambient, []);
    assert.ok(notes.some((n) => n.includes('ambient')));
  });
});

describe('privileged', () => {
  test('every capability the kernel has, no masked or read-only paths, no seccomp, writable sysfs', () => {
    const { spec, notes } = buildOciSpecWithNotes(input({ cgroups: { canEnforceLimits: true }, config: withSc({ privileged: true, seccomp: { profileType: 'RuntimeDefault' }, capabilities: { dropCapabilities: ['ALL'] } }) }));
    assert.equal(allCapabilities.length, 41);
    assert.deepEqual(spec.process.capabilities.bounding, [...allCapabilities]);
    assert.deepEqual(spec.process.capabilities.effective, [...allCapabilities]);
    assert.ok(allCapabilities.includes('CAP_CHECKPOINT_RESTORE') && allCapabilities.includes('CAP_BPF') && allCapabilities.includes('CAP_SYS_ADMIN'));
    assert.deepEqual(spec.linux.maskedPaths, []);
    assert.deepEqual(spec.linux.readonlyPaths, []);
    assert.equal(spec.linux.seccomp, undefined);
    assert.deepEqual(mountAt(spec, '/sys')?.options, ['nosuid', 'noexec', 'nodev', 'rw']);
    assert.deepEqual(mountAt(spec, '/sys/fs/cgroup')?.options, ['nosuid', 'noexec', 'nodev', 'relatime', 'rw']);
    assert.ok(notes.some((n) => n.includes('devices')), 'the missing host devices are reported');
  });
});

describe('security context', () => {
  test('no_new_privs is false unless set', () => {
    assert.equal(build().process.noNewPrivileges, false);
    assert.equal(build({ config: withSc({ noNewPrivs: true }) }).process.noNewPrivileges, true);
  });
  test("masked and read-only paths: the request's, else containerd's defaults", () => {
    const spec = build();
    assert.deepEqual(spec.linux.maskedPaths, [...defaultMaskedPaths]);
    assert.deepEqual(spec.linux.readonlyPaths, [...defaultReadonlyPaths]);
    assert.ok(spec.linux.maskedPaths.includes('/proc/kcore') && spec.linux.readonlyPaths.includes('/proc/sys'));
    const own = build({ config: withSc({ maskedPaths: ['/proc/x'], readonlyPaths: ['/proc/y'] }) });
    assert.deepEqual(own.linux.maskedPaths, ['/proc/x']);
    assert.deepEqual(own.linux.readonlyPaths, ['/proc/y']);
  });
  test('seccomp RuntimeDefault uses the runtime profile; Localhost loads the ref; Unconfined none', () => {
    assert.deepEqual(build({ config: withSc({ seccomp: { profileType: 'RuntimeDefault' } }) }).linux.seccomp, runtimeDefaultProfile);
    assert.deepEqual(build({ config: withSc({ seccomp: { profileType: 'Localhost', localhostRef: '/var/lib/kubelet/seccomp/p.json' } }) }).linux.seccomp, { defaultAction: 'SCMP_ACT_LOG', path: '/var/lib/kubelet/seccomp/p.json' });
    assert.equal(build({ config: withSc({ seccomp: { profileType: 'Unconfined' } }) }).linux.seccomp, undefined);
    assert.equal(build().linux.seccomp, undefined, 'unset is unconfined, as containerd');
  });
  test('the deprecated seccomp_profile_path forms', () => {
    assert.deepEqual(build({ config: withSc({ seccompProfilePath: 'runtime/default' }) }).linux.seccomp, runtimeDefaultProfile);
    assert.deepEqual(build({ config: withSc({ seccompProfilePath: 'docker/default' }) }).linux.seccomp, runtimeDefaultProfile);
    assert.deepEqual(build({ config: withSc({ seccompProfilePath: 'localhost//p.json' }) }).linux.seccomp, { defaultAction: 'SCMP_ACT_LOG', path: '/p.json' });
    assert.equal(build({ config: withSc({ seccompProfilePath: 'unconfined' }) }).linux.seccomp, undefined);
    rejects({ config: withSc({ seccompProfilePath: 'bogus' }) }, 'config.linux.securityContext.seccompProfilePath');
  });
  test('RuntimeDefault without a runtime profile is omitted and reported', () => {
    const { spec, notes } = buildOciSpecWithNotes(input({ seccomp: { runtimeDefault: undefined, loadLocalhost: () => ({}) }, config: withSc({ seccomp: { profileType: 'RuntimeDefault' } }) }));
    assert.equal(spec.linux.seccomp, undefined);
    assert.ok(notes.some((n) => n.includes('RuntimeDefault')));
  });
  test('Localhost without a ref is refused; a loader failure propagates', () => {
    rejects({ config: withSc({ seccomp: { profileType: 'Localhost', localhostRef: '' } }) }, 'config.linux.securityContext.seccomp.localhostRef');
    assert.throws(
      () =>
        build({
          config: withSc({ seccomp: { profileType: 'Localhost', localhostRef: '/missing.json' } }),
          seccomp: {
            runtimeDefault,
            loadLocalhost: () => {
              throw new Error('ENOENT /missing.json');
            },
          },
        }),
      /ENOENT/,
    );
  });
  test('AppArmor is ignored, a Localhost profile reported', () => {
    const { spec, notes } = buildOciSpecWithNotes(input({ config: withSc({ apparmor: { profileType: 'Localhost', localhostRef: 'k8s-x' } }) }));
    assert.ok(!('apparmorProfile' in spec.process));
    assert.ok(notes.some((n) => n.includes('AppArmor')));
    assert.deepEqual(buildOciSpecWithNotes(input({ config: withSc({ apparmor: { profileType: 'RuntimeDefault' } }) })).notes, []);
  });
});

describe('sysctls, resources, oom score, rlimits', () => {
  test('linux.sysctl from the sandbox; none when empty', () => {
    assert.deepEqual(build({ sandbox: sandbox({ sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shm_rmid_forced': '1' } }) }).linux.sysctl, { 'net.ipv4.ip_unprivileged_port_start': '0', 'kernel.shm_rmid_forced': '1' });
    assert.equal(build().linux.sysctl, undefined);
  });
  test('sysctls runc would refuse are InvalidArgument naming the key', () => {
    rejects({ sandbox: sandbox({ hostNetwork: true, sysctls: { 'net.core.somaxconn': '1024' } }) }, 'sandbox.sysctls["net.core.somaxconn"]');
    rejects({ sandbox: sandbox({ ipcPath: undefined, sysctls: { 'kernel.shmmax': '1' } }) }, 'sandbox.sysctls["kernel.shmmax"]');
    rejects({ sandbox: sandbox({ sysctls: { 'vm.swappiness': '1' } }) }, 'sandbox.sysctls["vm.swappiness"]', 'InvalidArgument', /not namespaced/);
  });

  const resources = { cpuShares: '512', cpuQuota: '50000', cpuPeriod: '100000', memoryLimitInBytes: '134217728', oomScoreAdj: '500', hugepageLimits: [{ pageSize: '2MB', limit: '0' }] };

  test('with delegated cgroups: cpu, memory, pids and the cgroups path', () => {
    const { spec, notes } = buildOciSpecWithNotes(
      input({ cgroups: { canEnforceLimits: true, path: '/user.slice/user-1000.slice/user@1000.service/usernode', pidsLimit: 4096 }, sandbox: sandbox({ cgroupParent: '/kubepods/burstable/pod1' }), config: config({ linux: { resources } }) }),
    );
    assert.deepEqual(spec.linux.resources, { cpu: { shares: 512, quota: 50000, period: 100000 }, memory: { limit: 134217728 }, pids: { limit: 4096 } });
    assert.equal(spec.linux.cgroupsPath, '/user.slice/user-1000.slice/user@1000.service/usernode/kubepods/burstable/pod1/c0ffee');
    assert.ok(notes.some((n) => n.includes('hugepage')));
    assert.ok(!notes.some((n) => n.includes('not enforced: no cgroup')));
  });
  test('an explicit swap limit, cpusets and unified are passed; zeros are left out', () => {
    const spec = build({ cgroups: { canEnforceLimits: true }, config: config({ linux: { resources: { memoryLimitInBytes: '100', memorySwapLimitInBytes: '200', cpuShares: '0', cpusetCpus: '0-1', unified: { 'memory.high': '90' } } } }) });
    assert.deepEqual(spec.linux.resources, { cpu: { cpus: '0-1' }, memory: { limit: 100, swap: 200 }, unified: { 'memory.high': '90' } });
    assert.equal(spec.linux.cgroupsPath, '/c0ffee');
    assert.equal(build({ cgroups: { canEnforceLimits: true } }).linux.resources, undefined);
  });
  test('without delegated cgroups: no resources, no cgroupsPath, and a note', () => {
    const { spec, notes } = buildOciSpecWithNotes(input({ sandbox: sandbox({ cgroupParent: '/kubepods/pod1' }), config: config({ linux: { resources } }) }));
    assert.equal(spec.linux.resources, undefined);
    assert.equal(spec.linux.cgroupsPath, undefined);
    assert.ok(notes.some((n) => n.includes('not enforced')));
    assert.deepEqual(buildOciSpecWithNotes(input()).notes, []);
  });
  test('oom_score_adj: 0..1000 as asked, negative raised to 0 with a note, none without resources', () => {
    const adj = (v: string): number | undefined => build({ config: config({ linux: { resources: { oomScoreAdj: v } } }) }).process.oomScoreAdj;
    assert.equal(adj('500'), 500);
    assert.equal(adj('1000'), 1000);
    assert.equal(adj('0'), 0);
    assert.equal(adj('-997'), 0);
    assert.equal(adj('1500'), 1000);
    assert.ok(buildOciSpecWithNotes(input({ config: config({ linux: { resources: { oomScoreAdj: '-997' } } }) })).notes.some((n) => n.includes('-997')));
    assert.equal(build().process.oomScoreAdj, undefined);
  });
  test('rlimits from the input, else none', () => {
    assert.equal(build().process.rlimits, undefined);
    assert.deepEqual(build({ rlimits: [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }] }).process.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }]);
    rejects({ rlimits: [{ type: 'RLIMIT_NOFILE', soft: 2048, hard: 1024 }] }, 'rlimits[0]');
  });
});
