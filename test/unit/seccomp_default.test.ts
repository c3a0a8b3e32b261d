import assert from 'node:assert/strict';
import { describe, test } from 'node:test';

import { runtimeDefaultSeccomp, type OciSeccomp } from '../../pkg/sandbox/seccomp_default.js';

const allowedNames = (p: OciSeccomp): Set<string> =>
  new Set(p.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args).flatMap((r) => r.names));

const defaultCaps = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW', 'CAP_SYS_CHROOT', 'CAP_MKNOD', 'CAP_AUDIT_WRITE', 'CAP_SETFCAP'];

describe('the RuntimeDefault seccomp profile', () => {
  test('is an allow list: anything unnamed fails with EPERM, on the machine\'s architectures', () => {
    const p = runtimeDefaultSeccomp(defaultCaps, 'x64');
    assert.equal(p.defaultAction, 'SCMP_ACT_ERRNO');
    assert.equal(p.defaultErrnoRet, 1);
    assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
    assert.deepEqual(runtimeDefaultSeccomp([], 'arm64').architectures, ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  });

  test('lets ordinary programs run: files, processes, sockets, time, threads', () => {
    const allow = allowedNames(runtimeDefaultSeccomp(defaultCaps, 'x64'));
    for (const n of ['read', 'write', 'openat', 'execve', 'mmap', 'futex', 'socket', 'connect', 'accept4', 'epoll_wait', 'clock_gettime', 'wait4', 'rt_sigaction', 'chroot', 'statx', 'getrandom']) {
      assert.ok(allow.has(n), `${n} is not allowed`);
    }
  });

  test('refuses what reaches past the container, unless a capability makes it legitimate', () => {
    const plain = allowedNames(runtimeDefaultSeccomp(defaultCaps, 'x64'));
    for (const n of ['mount', 'umount2', 'unshare', 'setns', 'pivot_root', 'reboot', 'init_module', 'finit_module', 'bpf', 'perf_event_open', 'settimeofday', 'clock_settime', 'acct', 'swapon', 'kexec_load', 'keyctl', 'add_key', 'ioperm', 'open_by_handle_at', 'sethostname']) {
      assert.ok(!plain.has(n), `${n} is allowed without its capability`);
    }
    const admin = allowedNames(runtimeDefaultSeccomp([...defaultCaps, 'CAP_SYS_ADMIN'], 'x64'));
    for (const n of ['mount', 'umount2', 'unshare', 'setns', 'sethostname', 'clone', 'clone3']) assert.ok(admin.has(n), `${n} is refused with CAP_SYS_ADMIN`);
    assert.ok(allowedNames(runtimeDefaultSeccomp(['CAP_SYS_BOOT'], 'x64')).has('reboot'));
    assert.ok(allowedNames(runtimeDefaultSeccomp(['CAP_SYS_TIME'], 'x64')).has('clock_settime'));
    // Never, whatever the capabilities: swap, kexec and the kernel keyring.
    const all = allowedNames(runtimeDefaultSeccomp(['CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_MODULE', 'CAP_SYS_TIME', 'CAP_SYS_RAWIO', 'CAP_SYS_PTRACE', 'CAP_BPF', 'CAP_PERFMON'], 'x64'));
    for (const n of ['kexec_load', 'kexec_file_load', 'swapon', 'swapoff', 'keyctl', 'add_key', 'request_key']) assert.ok(!all.has(n), `${n} is allowed`);
  });

  test('clone makes threads and processes but no namespaces without CAP_SYS_ADMIN; clone3 answers ENOSYS so libc falls back', () => {
    const p = runtimeDefaultSeccomp(defaultCaps, 'x64');
    const clone = p.syscalls.filter((r) => r.names.includes('clone'));
    assert.equal(clone.length, 1);
    assert.deepEqual(clone[0]!.args, [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
    assert.deepEqual(p.syscalls.find((r) => r.names.includes('clone3')), { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 });
    assert.equal(runtimeDefaultSeccomp(defaultCaps, 's390x').syscalls.find((r) => r.names.includes('clone'))!.args![0]!.index, 1);
  });

  test('personality only for the usual execution domains', () => {
    const values = runtimeDefaultSeccomp(defaultCaps, 'x64')
      .syscalls.filter((r) => r.names.includes('personality'))
      .map((r) => r.args?.[0]?.value);
    assert.deepEqual(values, [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]);
  });
});
