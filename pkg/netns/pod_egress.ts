import { internal } from '../errdefs/errors.js';
import { runTool } from './exec_tool.js';

// Pods reach the outside through the node's address (slirp4netns): their
// traffic leaving the pod network is masqueraded. The bridge plugin can do it
// per pod (ipMasq), at the price of a chain and nine iptables runs on every
// pod start and stop (measured: about half of RunPodSandbox). One chain for
// the whole pod CIDR, made once when the runtime starts, does the same work.

export const egressChain = 'USERNODE-POD-EGRESS';

/** Makes (or remakes) the masquerade rules for `podCIDR`; idempotent. */
export async function ensurePodEgress(iptables: string, podCIDR: string): Promise<void> {
  const ipt = async (args: string[]): Promise<{ code: number | null; stderr: string }> => runTool(iptables, ['-w', '-t', 'nat', ...args]);
  const must = async (args: string[]): Promise<void> => {
    const r = await ipt(args);
    if (r.code !== 0) throw internal(`iptables -t nat ${args.join(' ')} failed: ${r.stderr.trim()}`, { field: 'network.podCIDR' });
  };
  // -N fails when the chain exists: then it is emptied and filled again.
  await ipt(['-N', egressChain]);
  await must(['-F', egressChain]);
  await must(['-A', egressChain, '-d', podCIDR, '-j', 'RETURN', '-m', 'comment', '--comment', 'usernode: within the pod network']);
  await must(['-A', egressChain, '-d', '224.0.0.0/4', '-j', 'RETURN', '-m', 'comment', '--comment', 'usernode: multicast']);
  await must(['-A', egressChain, '-j', 'MASQUERADE', '-m', 'comment', '--comment', 'usernode: pods to the outside']);
  const jump = ['POSTROUTING', '-s', podCIDR, '-j', egressChain];
  if ((await ipt(['-C', ...jump])).code !== 0) await must(['-A', ...jump]);
}
