import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { Duplex } from 'node:stream';

// A TCP connection to a port on a pod's own loopback, as kubelet's
// port-forward makes it: from inside the pod's network namespace, so a server
// that listens on 127.0.0.1 only is reached too. The agent cannot enter a
// namespace itself (Node has no setns), so socat does, under nsenter; its
// stdio is the connection. A pod on the node's network is dialled directly.

export interface PodDialOptions {
  nsenter: string;
  socat: string;
}

export function dialInPod(o: PodDialOptions, netnsPath: string | undefined, port: number): Promise<Duplex> {
  if (!netnsPath) {
    return new Promise((resolve, reject) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
  }
  return new Promise((resolve, reject) => {
    // -d -d: socat says when the connection stands ("starting data transfer
    // loop") or why it does not ("E connect(…): Connection refused").
    const child = spawn(o.nsenter, [`--net=${netnsPath}`, '--', o.socat, '-d', '-d', '-', `TCP4:127.0.0.1:${port}`], { stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    let connected = false;
    const conn = Duplex.from({ readable: child.stdout, writable: child.stdin });
    child.stderr.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
      if (!connected && stderr.includes('starting data transfer loop')) {
        connected = true;
        resolve(conn);
      }
    });
    child.once('error', (e) => reject(e));
    child.once('close', (code) => {
      const why = stderr.split('\n').find((l) => / E /.test(l))?.replace(/^.*? E /, '') ?? `socat exit code ${code}`;
      if (!connected) reject(new Error(why));
      else if (code !== 0) conn.destroy(new Error(why));
    });
    conn.on('error', () => undefined);
    conn.once('close', () => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
  });
}
