import { readFile } from 'node:fs/promises';

// Interface counters of a network namespace. /proc/PID/net/dev is the view
// of PID's network namespace (sysfs, unlike it, stays the mounter's), so a
// process in a pod shows the pod's eth0 without entering its namespace.

export interface InterfaceCounters {
  name: string;
  rxBytes: bigint;
  rxPackets: bigint;
  rxErrors: bigint;
  rxDropped: bigint;
  txBytes: bigint;
  txPackets: bigint;
  txErrors: bigint;
  txDropped: bigint;
}

/** The counters in a net/dev file; [] when it cannot be read (the process is gone). */
export async function readNetDev(path: string): Promise<InterfaceCounters[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return [];
  }
  const out: InterfaceCounters[] = [];
  // Two header lines, then "  name: rx bytes packets errs drop fifo frame compressed multicast tx bytes packets errs drop …".
  for (const line of text.split('\n').slice(2)) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const v = line
      .slice(colon + 1)
      .trim()
      .split(/\s+/)
      .map((x) => (/^\d+$/.test(x) ? BigInt(x) : 0n));
    const at = (i: number): bigint => v[i] ?? 0n;
    out.push({
      name: line.slice(0, colon).trim(),
      rxBytes: at(0),
      rxPackets: at(1),
      rxErrors: at(2),
      rxDropped: at(3),
      txBytes: at(8),
      txPackets: at(9),
      txErrors: at(10),
      txDropped: at(11),
    });
  }
  return out;
}

/** The other end of a veth pair counts the same traffic the other way round. */
export function asSeenFromPeer(c: InterfaceCounters, name: string): InterfaceCounters {
  return {
    name,
    rxBytes: c.txBytes,
    rxPackets: c.txPackets,
    rxErrors: c.txErrors,
    rxDropped: c.txDropped,
    txBytes: c.rxBytes,
    txPackets: c.rxPackets,
    txErrors: c.rxErrors,
    txDropped: c.rxDropped,
  };
}
