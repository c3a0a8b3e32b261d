#!/usr/bin/env node
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { isDomainError, messageOf } from '../../pkg/errdefs/errors.js';
import { loadConfig } from './config.js';
import { rootRefusal } from './rootless.js';
import { agentVersion } from './version.js';

// usernode: a Kubernetes node an ordinary Linux user can run.

const usage = `usage: usernode <command> [flags]

commands:
  run      start the node: the node namespace, the CRI runtime, the node agent
  check    report every missing host prerequisite and the command that fixes it
  enter    run a command inside the node namespace: usernode enter [-- CMD ARGS...]
  stop     stop the agent, every pod and the node namespace
  install  write a systemd user unit that runs \`usernode run\` with the flags given
           (--force replaces one written before); says how to enable lingering
  uninstall  remove that unit
  image    images without a registry: usernode image import PATH [--name NAME]
                                      usernode image build-rootfs DIR NAME
  version  print the version

flags (run, check, enter, stop, install, uninstall):
  --config FILE        YAML config file (default: $XDG_CONFIG_HOME/usernode/config.yaml if present)
  --log-level LEVEL    debug, info, warn or error (run only; default info)
  --cri-socket PATH    CRI socket (default: $XDG_RUNTIME_DIR/usernode/cri.sock)

flags (run and install), joining a cluster:
  --kubeconfig FILE            the node's credentials for the kube-apiserver (without: static pods only)
  --node-name NAME             the Node's name (default: the host name)
  --node-ip IP                 the Node's InternalIP (default: the host's first IPv4)
  --node-labels K=V[,K=V]      labels for the Node
  --register-with-taints K[=V]:EFFECT[,...]  taints for the Node
  --kubelet-address HOST:PORT  the kubelet API (TLS; default 0.0.0.0:10250 with --kubeconfig)
  --cluster-dns IP[,IP]        the cluster DNS service for ClusterFirst pods (kubelet's --cluster-dns)
  --cluster-domain DOMAIN      the cluster's DNS domain (default cluster.local)
  --kubelet PATH               kubelet mode: run this upstream kubelet inside the node namespace on
                               usernode's CRI socket instead of usernode's own node agent
                               (needs --kubeconfig; see docs/kubelet-mode.md)
  -h, --help           this help
`;

const commonOptions = {
  config: { type: 'string' },
  'cri-socket': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

class UsageError extends Error {}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '-h' || command === '--help' || command === 'help') {
    process.stdout.write(usage);
    return command === undefined ? 2 : 0;
  }
  if (command === 'version' || command === '--version') {
    process.stdout.write(`usernode ${agentVersion}\n`);
    return 0;
  }
  if (command === 'runtime') {
    // Internal: the runtime half, started by `run` inside the node namespace.
    const { values } = parse(command, rest, { 'resolved-config': { type: 'string' } });
    if (typeof values['resolved-config'] !== 'string') throw new UsageError('usernode runtime: --resolved-config is required');
    // Each command loads only its own modules: the node half never holds the runtime's (images, CRI, streaming), and the other way round.
    return (await import('./runtime.js')).runRuntime(values['resolved-config']);
  }
  if (!['run', 'check', 'enter', 'stop', 'image', 'install', 'uninstall'].includes(command)) throw new UsageError(`usernode: unknown command "${command}"\n\n${usage}`);

  const refusal = rootRefusal(process.getuid?.(), command);
  if (refusal) {
    process.stderr.write(refusal);
    return 1;
  }

  const split = rest.indexOf('--');
  const flagArgs = command === 'enter' && split >= 0 ? rest.slice(0, split) : rest;
  const tail = command === 'enter' && split >= 0 ? rest.slice(split + 1) : [];
  const options: OptionsConfig =
    command === 'run' || command === 'install'
      ? {
          ...commonOptions,
          'log-level': { type: 'string' },
          kubeconfig: { type: 'string' },
          'node-name': { type: 'string' },
          'node-ip': { type: 'string' },
          'node-labels': { type: 'string' },
          'register-with-taints': { type: 'string' },
          'kubelet-address': { type: 'string' },
          'cluster-dns': { type: 'string' },
          'cluster-domain': { type: 'string' },
          kubelet: { type: 'string' },
          ...(command === 'install' ? { force: { type: 'boolean' } } : {}),
        }
      : command === 'image'
        ? { ...commonOptions, name: { type: 'string' } }
        : { ...commonOptions };
  const { values, positionals } = parse(command, flagArgs, options);
  if (values.help) {
    process.stdout.write(usage);
    return 0;
  }
  if (positionals.length > 0 && command !== 'image') {
    throw new UsageError(`usernode ${command}: unexpected argument "${positionals[0]}"${command === 'enter' ? ' (put the command after --)' : ''}`);
  }
  if (command === 'install') {
    // The unit runs from another working folder: file flags become absolute here.
    for (const k of ['config', 'kubeconfig', 'cri-socket', 'kubelet']) if (typeof values[k] === 'string') values[k] = resolve(values[k]);
  }
  const config = loadConfig({
    config: values.config as string | undefined,
    criSocket: values['cri-socket'] as string | undefined,
    logLevel: values['log-level'] as string | undefined,
    kubeconfig: values.kubeconfig as string | undefined,
    nodeName: values['node-name'] as string | undefined,
    nodeIp: values['node-ip'] as string | undefined,
    nodeLabels: values['node-labels'] as string | undefined,
    registerWithTaints: values['register-with-taints'] as string | undefined,
    kubeletAddress: values['kubelet-address'] as string | undefined,
    clusterDns: values['cluster-dns'] as string | undefined,
    clusterDomain: values['cluster-domain'] as string | undefined,
    kubelet: values.kubelet as string | undefined,
  });
  switch (command) {
    case 'run':
      return (await import('./run.js')).runNode(config, process.env);
    case 'check':
      return (await import('./check.js')).check(config, process.env);
    case 'enter':
      return (await import('./enter.js')).enter(config, process.env, tail);
    case 'stop':
      return (await import('./stop.js')).stop(config, process.env);
    case 'install': {
      // run's flags as given (checked by loadConfig above), for the unit's ExecStart.
      const runArgs = Object.entries(values).flatMap(([k, v]) => (k === 'force' || k === 'help' || typeof v !== 'string' ? [] : [`--${k}`, v]));
      return (await import('./install.js')).install(runArgs, { force: values.force === true, env: process.env });
    }
    case 'uninstall':
      return (await import('./install.js')).uninstall({ env: process.env });
    case 'image':
      return (await import('./image.js')).imageCommand(config, positionals[0], positionals.slice(1), values.name as string | undefined);
    default:
      return 2;
  }
}

type OptionsConfig = NonNullable<NonNullable<Parameters<typeof parseArgs>[0]>['options']>;

function parse(
  command: string,
  args: string[],
  options: OptionsConfig,
): { values: Record<string, string | boolean | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args, options, allowPositionals: true, strict: true });
    return { values: r.values as Record<string, string | boolean | undefined>, positionals: r.positionals };
  } catch (e: unknown) {
    const m = /'(-[^']+)'/.exec(messageOf(e));
    throw new UsageError(`usernode ${command}: ${m ? `unknown or malformed flag ${m[1]}` : messageOf(e)} (see usernode ${command} --help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    if (e instanceof UsageError) {
      process.stderr.write(`${e.message}\n`);
      process.exit(2);
    }
    const command = process.argv[2] ?? '';
    // Domain errors already name their field, flag or path; anything else is a bug worth its stack.
    process.stderr.write(`usernode ${command}: ${isDomainError(e) ? e.message : e instanceof Error ? (e.stack ?? e.message) : messageOf(e)}\n`);
    process.exit(1);
  },
);
