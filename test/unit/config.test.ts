import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';

import { type ConfigFlags, findTool, loadConfig } from '../../cmd/agent/config.js';
import { isDomainError } from '../../pkg/errdefs/errors.js';

// loadConfig only ever sees the env object we pass, with every XDG folder in
// a temp dir, so the real user's config cannot leak in.

let root: string;
let env: NodeJS.ProcessEnv;
let configDir: string;
let n = 0;

before(async () => {
  root = await mkdtemp(join(tmpdir(), 'usernode-config-'));
  configDir = join(root, 'config');
  await mkdir(join(root, 'run'), { recursive: true });
  await mkdir(join(root, 'bin'), { recursive: true });
  env = {
    HOME: join(root, 'home'),
    XDG_RUNTIME_DIR: join(root, 'run'),
    XDG_DATA_HOME: join(root, 'data'),
    XDG_CONFIG_HOME: configDir,
    PATH: join(root, 'bin'),
  };
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A config file of its own for each test; returns its path. */
async function configFile(text: string): Promise<string> {
  const p = join(root, `config-${++n}.yaml`);
  await writeFile(p, text);
  return p;
}

/** The config file the last configFile() call wrote. */
function file0(): string {
  return join(root, `config-${n}.yaml`);
}

/** Asserts loadConfig throws InvalidArgument whose message holds every `parts`; returns the message. */
function rejects(flags: ConfigFlags, parts: ReadonlyArray<string | RegExp>, e2: NodeJS.ProcessEnv = env): string {
  let thrown: unknown;
  try {
    loadConfig(flags, e2);
  } catch (e: unknown) {
    thrown = e;
  }
  assert.ok(thrown !== undefined, 'loadConfig did not throw');
  assert.ok(isDomainError(thrown), `not a domain error: ${String(thrown)}`);
  assert.equal(thrown.code, 'InvalidArgument');
  for (const p of parts) {
    if (typeof p === 'string') assert.ok(thrown.message.includes(p), `message ${JSON.stringify(thrown.message)} does not name ${p}`);
    else assert.match(thrown.message, p);
  }
  return thrown.message;
}

describe('loadConfig defaults', () => {
  test('paths come from the XDG folders, network from the built-in defaults', () => {
    const c = loadConfig({}, env);
    assert.equal(c.configFile, undefined);
    assert.equal(c.xdgRuntimeDir, join(root, 'run'));
    assert.equal(c.runtimeDir, join(root, 'run', 'usernode'));
    assert.equal(c.criSocket, join(root, 'run', 'usernode', 'cri.sock'));
    assert.equal(c.dataDir, join(root, 'data', 'usernode'));
    assert.equal(c.logLevel, 'info');
    assert.equal(c.network.mtu, 65520);
    assert.equal(c.network.podCIDR, '10.88.0.0/16');
    assert.equal(c.network.bridge, 'usernode0');
    assert.equal(c.tools.cniBinDir, '/usr/lib/cni');
  });

  test('without XDG_DATA_HOME the data folder is under $HOME/.local/share', () => {
    const c = loadConfig({}, { ...env, XDG_DATA_HOME: undefined });
    assert.equal(c.dataDir, join(root, 'home', '.local', 'share', 'usernode'));
  });

  test('$XDG_CONFIG_HOME/usernode/config.yaml is read when no --config is given', async () => {
    const dir = join(root, 'xdg-config-default');
    await mkdir(join(dir, 'usernode'), { recursive: true });
    const file = join(dir, 'usernode', 'config.yaml');
    await writeFile(file, 'logLevel: debug\nnetwork:\n  mtu: 1500\n  podCIDR: 10.99.0.0/16\n');
    const c = loadConfig({}, { ...env, XDG_CONFIG_HOME: dir });
    assert.equal(c.configFile, file);
    assert.equal(c.logLevel, 'debug');
    assert.equal(c.network.mtu, 1500);
    assert.equal(c.network.podCIDR, '10.99.0.0/16');
  });

  test('an error in the default config file names that file', async () => {
    const dir = join(root, 'xdg-config-bad');
    await mkdir(join(dir, 'usernode'), { recursive: true });
    const file = join(dir, 'usernode', 'config.yaml');
    await writeFile(file, 'network:\n  mtu: 100\n');
    rejects({}, [file, 'network.mtu'], { ...env, XDG_CONFIG_HOME: dir });
  });

  test('an empty config file is all defaults', async () => {
    const c = loadConfig({ config: await configFile('') }, env);
    assert.equal(c.network.mtu, 65520);
  });
});

describe('loadConfig layering', () => {
  test('file values replace defaults, flags replace file values', async () => {
    const file = await configFile(
      [`criSocket: ${join(root, 'file.sock')}`, 'logLevel: warn', `dataDir: ${join(root, 'd2')}`, 'network:', '  bridge: un1', ''].join('\n'),
    );
    const fromFile = loadConfig({ config: file }, env);
    assert.equal(fromFile.configFile, file);
    assert.equal(fromFile.criSocket, join(root, 'file.sock'));
    assert.equal(fromFile.logLevel, 'warn');
    assert.equal(fromFile.dataDir, join(root, 'd2'));
    assert.equal(fromFile.network.bridge, 'un1');

    const withFlags = loadConfig({ config: file, criSocket: join(root, 'flag.sock'), logLevel: 'error' }, env);
    assert.equal(withFlags.criSocket, join(root, 'flag.sock'));
    assert.equal(withFlags.logLevel, 'error');
    assert.equal(withFlags.dataDir, join(root, 'd2'));
  });

  test('runtimeDir in the file moves the default socket with it', async () => {
    const c = loadConfig({ config: await configFile(`runtimeDir: ${join(root, 'rt')}\n`) }, env);
    assert.equal(c.runtimeDir, join(root, 'rt'));
    assert.equal(c.criSocket, join(root, 'rt', 'cri.sock'));
  });

  test('a --config file replaces the default one', async () => {
    const dir = join(root, 'xdg-config-ignored');
    await mkdir(join(dir, 'usernode'), { recursive: true });
    await writeFile(join(dir, 'usernode', 'config.yaml'), 'logLevel: debug\n');
    const file = await configFile('logLevel: warn\n');
    const c = loadConfig({ config: file }, { ...env, XDG_CONFIG_HOME: dir });
    assert.equal(c.configFile, file);
    assert.equal(c.logLevel, 'warn');
  });

  test('tools.rootlesskit given as an absolute path is used as is', async () => {
    const c = loadConfig({ config: await configFile('tools:\n  rootlesskit: /opt/rk/bin/rootlesskit\n') }, env);
    assert.equal(c.tools.rootlesskit, '/opt/rk/bin/rootlesskit');
  });
});

describe('loadConfig errors name the file and the setting', () => {
  test('a --config file that does not exist', () => {
    const missing = join(root, 'nope.yaml');
    rejects({ config: missing }, ['--config', missing, 'does not exist']);
  });

  test('malformed YAML gives the line number', async () => {
    const file = await configFile('logLevel: info\nnetwork:\n  mtu: [1500\n  bridge: x\n');
    const msg = rejects({ config: file }, [file, /not valid YAML/, /line \d+/]);
    assert.doesNotMatch(msg, /\n/, 'the message is one line');
  });

  test('YAML that is not a mapping', async () => {
    const file = await configFile('- a\n- b\n');
    rejects({ config: file }, [file, 'mapping']);
  });

  test('an unknown top-level key', async () => {
    const file = await configFile('logLevel: info\ncriSokcet: /tmp/x.sock\n');
    rejects({ config: file }, [file, 'criSokcet']);
  });

  test('an unknown nested key (network.foo) is named once', async () => {
    const file = await configFile('network:\n  mtu: 1500\n  foo: 1\n');
    const msg = rejects({ config: file }, [`${file}: network.foo`, 'mtu, podCIDR, bridge']);
    assert.equal(msg.split('network.foo').length - 1, 1, msg);
  });

  test('network that is not a mapping', async () => {
    const file = await configFile('network: 5\n');
    rejects({ config: file }, [file, 'network']);
  });

  for (const mtu of ['1279', '65521', '1500.5', '"1500"']) {
    test(`mtu ${mtu} is refused`, async () => {
      const file = await configFile(`network:\n  mtu: ${mtu}\n`);
      rejects({ config: file }, [file, 'network.mtu', '1280', '65520']);
    });
  }

  test('mtu at the bounds is accepted', async () => {
    assert.equal(loadConfig({ config: await configFile('network:\n  mtu: 1280\n') }, env).network.mtu, 1280);
    assert.equal(loadConfig({ config: await configFile('network:\n  mtu: 65520\n') }, env).network.mtu, 65520);
  });

  for (const cidr of ['10.88.0.0', 'ten/16', '10.88.0.0/16 ', 'fd00::/64', '300.1.2.3/16', '10.256.0.0/16', '10.88.0.0/33', '10.0.0.0/7', '10.88.0.0/29', '10.88.0.1/16']) {
    test(`podCIDR ${JSON.stringify(cidr)} is refused`, async () => {
      const file = await configFile(`network:\n  podCIDR: ${JSON.stringify(cidr)}\n`);
      rejects({ config: file }, [file, 'network.podCIDR']);
    });
  }

  test('podCIDR with host bits set says which network was meant', async () => {
    const file = await configFile('network:\n  podCIDR: 10.88.7.0/16\n');
    rejects({ config: file }, [file, 'network.podCIDR', 'host bits', '10.88.0.0/16']);
  });

  test('podCIDR at the prefix bounds is accepted', async () => {
    assert.equal(loadConfig({ config: await configFile('network:\n  podCIDR: 10.0.0.0/8\n') }, env).network.podCIDR, '10.0.0.0/8');
    assert.equal(loadConfig({ config: await configFile('network:\n  podCIDR: 192.168.5.16/28\n') }, env).network.podCIDR, '192.168.5.16/28');
  });

  test('a bridge name longer than 15 characters', async () => {
    const file = await configFile('network:\n  bridge: abcdefghijklmnop\n');
    rejects({ config: file }, [file, 'network.bridge']);
  });

  test('a relative criSocket from the --cri-socket flag names the flag', () => {
    const msg = rejects({ criSocket: 'run/cri.sock' }, ['--cri-socket', 'absolute', 'run/cri.sock']);
    assert.ok(!msg.includes('config'), msg);
  });

  test('a relative criSocket in the file names the file and the setting', async () => {
    const file = await configFile('criSocket: run/cri.sock\n');
    const msg = rejects({ config: file }, [`${file}: criSocket`, 'absolute', 'run/cri.sock']);
    assert.ok(!msg.includes('--cri-socket'), msg);
  });

  test('a relative dataDir or runtimeDir in the file names the file and the setting', async () => {
    rejects({ config: await configFile('dataDir: data\n') }, [`${file0()}: dataDir`, 'absolute']);
    rejects({ config: await configFile('runtimeDir: run\n') }, [`${file0()}: runtimeDir`, 'absolute']);
  });

  test('a --cri-socket longer than 107 bytes names the flag and the limit', () => {
    const long = '/' + 'a'.repeat(100) + '/cri.sock';
    assert.ok(Buffer.byteLength(long) > 107);
    rejects({ criSocket: long }, ['--cri-socket', '107', String(Buffer.byteLength(long))]);
  });

  test('a criSocket longer than 107 bytes in the file names the file', async () => {
    const file = await configFile(`criSocket: /${'a'.repeat(110)}\n`);
    rejects({ config: file }, [`${file}: criSocket`, '107']);
  });

  test('a multi-byte criSocket is measured in bytes, not characters', () => {
    const p = '/' + 'é'.repeat(60) + '.sock';
    assert.ok(p.length <= 107 && Buffer.byteLength(p) > 107);
    rejects({ criSocket: p }, ['--cri-socket', '107']);
  });

  test('a criSocket of exactly 107 bytes is accepted', () => {
    const p = '/' + 'a'.repeat(97) + '/cri.sock';
    assert.equal(Buffer.byteLength(p), 107);
    assert.equal(loadConfig({ criSocket: p }, env).criSocket, p);
  });

  test('an empty criSocket in the file', async () => {
    const file = await configFile('criSocket: ""\n');
    rejects({ config: file }, [file, 'criSocket', 'non-empty']);
  });

  test('a bad --log-level', () => {
    rejects({ logLevel: 'loud' }, ['--log-level', '"loud"', 'debug, info, warn, error']);
  });

  test('a bad logLevel in the file', async () => {
    const file = await configFile('logLevel: loud\n');
    rejects({ config: file }, [file, 'logLevel', '"loud"']);
  });

  test('tools.rootlesskit must be absolute', async () => {
    const file = await configFile('tools:\n  rootlesskit: bin/rootlesskit\n');
    rejects({ config: file }, [file, 'tools.rootlesskit', 'absolute']);
  });

  test('tools.cniBinDir must be absolute', async () => {
    const file = await configFile('tools:\n  cniBinDir: lib/cni\n');
    rejects({ config: file }, [file, 'tools.cniBinDir', 'absolute']);
  });

  test('an unknown tool', async () => {
    const file = await configFile('tools:\n  docker: /usr/bin/docker\n');
    rejects({ config: file }, [file, 'tools.docker']);
  });
});

describe('findTool', () => {
  // A name no host folder holds, so only our PATH entry can supply it.
  const name = `usernode-test-tool-${process.pid}`;

  test('finds an executable file in a PATH folder', async () => {
    const dir = join(root, 'tools-exec');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, name), '#!/bin/sh\n', { mode: 0o755 });
    assert.equal(findTool(name, `${join(root, 'empty')}:${dir}`), join(dir, name));
  });

  test('skips a file without the execute bit', async () => {
    const dir = join(root, 'tools-noexec');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, name), '#!/bin/sh\n');
    await chmod(join(dir, name), 0o644);
    assert.equal(findTool(name, dir), undefined);
  });

  test('skips a folder of that name and goes on to the next PATH entry', async () => {
    const a = join(root, 'tools-dir-a');
    const b = join(root, 'tools-dir-b');
    await mkdir(join(a, name), { recursive: true });
    await mkdir(b, { recursive: true });
    await writeFile(join(b, name), '#!/bin/sh\n', { mode: 0o755 });
    assert.equal(findTool(name, `${a}:${b}`), join(b, name));
  });

  test('undefined PATH and unknown name gives undefined', () => {
    assert.equal(findTool(name, undefined), undefined);
  });

  test('loadConfig uses PATH from the env it is given', async () => {
    const dir = join(root, 'tools-rootlesskit');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'sleep'), '#!/bin/sh\n', { mode: 0o755 });
    const c = loadConfig({}, { ...env, PATH: dir });
    // The sbin folders come first: /bin/sleep exists on any host, so only
    // check ours is picked when the host has none.
    const hostSleep = findTool('sleep', undefined);
    assert.equal(c.tools.sleep, hostSleep ?? join(dir, 'sleep'));
  });
});


describe('streamingAddress', () => {
  test('defaults to any free port on the loopback; host:port is taken as given', async () => {
    assert.deepEqual(loadConfig({ config: await configFile('') }, env).streaming, { host: '127.0.0.1', port: 0 });
    assert.deepEqual(loadConfig({ config: await configFile('streamingAddress: "0.0.0.0:10010"\n') }, env).streaming, { host: '0.0.0.0', port: 10010 });
  });
  test('anything else is refused naming the setting', async () => {
    const f = await configFile('streamingAddress: "somewhere"\n');
    rejects({ config: f }, [f, 'streamingAddress', 'host:port']);
  });
});

describe('container log rotation settings (kubelet names, syntax and defaults)', () => {
  test("kubelet's defaults: 10Mi, 5 files, every 10s", () => {
    const c = loadConfig({}, env);
    assert.deepEqual(c.containerLogs, { maxSizeBytes: 10 * 1024 * 1024, maxFiles: 5, monitorIntervalMs: 10000, maxSize: '10Mi', monitorInterval: '10s' });
  });
  test('quantities and durations as kubelet writes them', async () => {
    const c = loadConfig({ config: await configFile('containerLogMaxSize: 64Ki\ncontainerLogMaxFiles: 3\ncontainerLogMonitorInterval: 1m30s\n') }, env);
    assert.deepEqual(c.containerLogs, { maxSizeBytes: 65536, maxFiles: 3, monitorIntervalMs: 90000, maxSize: '64Ki', monitorInterval: '1m30s' });
    assert.equal(loadConfig({ config: await configFile('containerLogMaxSize: 1M\n') }, env).containerLogs.maxSizeBytes, 1000000);
    assert.equal(loadConfig({ config: await configFile('containerLogMaxSize: 4096\n') }, env).containerLogs.maxSizeBytes, 4096);
  });
  test('bad values name the file and the setting', async () => {
    for (const [text, key, why] of [
      ['containerLogMaxSize: ten megs', 'containerLogMaxSize', /quantity of bytes such as 10Mi/],
      ['containerLogMaxSize: 0', 'containerLogMaxSize', /at least 1 byte/],
      ['containerLogMaxSize: -1Mi', 'containerLogMaxSize', /quantity/],
      ['containerLogMaxSize: [1]', 'containerLogMaxSize', /quantity/],
      ['containerLogMaxFiles: 1', 'containerLogMaxFiles', /greater than 1/],
      ['containerLogMaxFiles: 2.5', 'containerLogMaxFiles', /whole number/],
      ['containerLogMaxFiles: "5"', 'containerLogMaxFiles', /whole number/],
      ['containerLogMonitorInterval: 2s', 'containerLogMonitorInterval', /at least 3s/],
      ['containerLogMonitorInterval: 10', 'containerLogMonitorInterval', /duration such as 10s/],
    ] as const) {
      const path = await configFile(`${text}\n`);
      rejects({ config: path }, [`${path}: ${key}`, why]);
    }
  });
});
