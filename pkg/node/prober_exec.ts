import type { CriClients } from '../../proto/client.js';
import type { ExecSyncResponse__Output } from '../../proto/generated/runtime/v1/ExecSyncResponse.js';
import type { Prober, ProbeResult, ProbeSpec, ProbeTarget } from './prober.js';

// The exec kind of probe and hook, as kubelet's exec prober: the command runs
// in the container through the CRI's ExecSync with the probe's timeout; exit
// code 0 is success, anything else (a timeout, an error) is failure. Output
// is kept short, as kubelet caps what it puts in an event.

const maxOutput = 10 * 1024;

export function execProber(cri: CriClients): Prober {
  return {
    run(p: ProbeSpec, t: ProbeTarget): Promise<ProbeResult> {
      if (p.kind !== 'exec') return Promise.resolve({ result: 'failure', output: `the exec prober cannot run a ${p.kind} probe` });
      return new Promise<ProbeResult>((resolve) => {
        // ExecSync's timeout is whole seconds; the call's deadline a little after, so the runtime's answer comes first.
        const timeout = Math.max(1, Math.ceil(t.timeoutMs / 1000));
        cri.runtime.ExecSync({ containerId: t.containerId, cmd: p.command, timeout }, { deadline: Date.now() + timeout * 1000 + 5000 }, (err, res?: ExecSyncResponse__Output) => {
          if (err || !res) return resolve({ result: 'failure', output: err ? err.message : 'no answer to ExecSync' });
          const output = Buffer.concat([res.stdout, res.stderr]).subarray(0, maxOutput).toString();
          resolve({ result: res.exitCode === 0 ? 'success' : 'failure', output: res.exitCode === 0 ? output : `command ${JSON.stringify(p.command)} exited with ${res.exitCode}: ${output}`.trimEnd() });
        });
      });
    },
  };
}
