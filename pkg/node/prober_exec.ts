import type { CriClients } from '../../proto/client.js';
import { invalidArgument, unavailable } from '../errdefs/errors.js';
import type { ProbeResult, ProbeSpec, ProbeTarget, Prober } from './prober_net.js';

// exec probes as kubelet runs them: the command in the container through the
// runtime's ExecSync with the probe's timeout. Exit 0 is success, any other
// exit a failure; a runtime that ends the command at the timeout answers
// DEADLINE_EXCEEDED, which is a failure ("command … timed out", kubelet's
// ExecProbeTimeout behaviour). Any other error means the probe could not run
// and rejects, so the pod worker discards it as kubelet discards probe errors.

/** kubelet keeps at most this much of an exec probe's output (prober maxReadLength). */
const maxOutputBytes = 10 * 1024;
const deadlineExceededCode = 4;

export function execProber(cri: Pick<CriClients, 'runtime'>, o: { graceMs?: number } = {}): Prober {
  return {
    run: (p: ProbeSpec, t: ProbeTarget): Promise<ProbeResult> => {
      if (p.kind !== 'exec') return Promise.reject(invalidArgument(`a ${p.kind} probe is made from the node network (netProber), not in the container`, { field: p.kind }));
      if (p.command.length === 0) return Promise.reject(invalidArgument('exec.command must name a command', { field: 'exec.command' }));
      // ExecSync's timeout is whole seconds; the call's own deadline leaves
      // the runtime time to end the command and answer.
      const seconds = Math.max(1, Math.ceil(t.timeoutMs / 1000));
      return new Promise((resolve, reject) => {
        cri.runtime.ExecSync(
          { containerId: t.containerId, cmd: p.command, timeout: seconds },
          { deadline: Date.now() + seconds * 1000 + (o.graceMs ?? 10000) },
          (err, res) => {
            if (err?.code === deadlineExceededCode) return resolve({ result: 'failure', output: `command "${p.command.join(' ')}" timed out` });
            if (err || !res) return reject(unavailable(`exec probe in container ${t.containerId}: ${err?.details ?? err?.message ?? 'empty ExecSync response'}`, { cause: err }));
            const output = Buffer.concat([res.stdout, res.stderr]).subarray(0, maxOutputBytes).toString('utf8');
            resolve({ result: res.exitCode === 0 ? 'success' : 'failure', output });
          },
        );
      });
    },
  };
}
