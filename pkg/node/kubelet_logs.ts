import type { ServerResponse } from 'node:http';

import type { CriClients } from '../../proto/client.js';
import { followCriLog, type LogOptions, readCriLog, rfc3339Ns } from './cri_log.js';
import { containerStatus, findContainer, KubeletApiError } from './kubelet_pods.js';

// /containerLogs/{namespace}/{pod}/{container}: what `kubectl logs` reads,
// with kubelet's query (PodLogOptions): follow, previous, tailLines,
// sinceSeconds | sinceTime, timestamps, limitBytes, stream. The container is
// found through the CRI, and its log is the file ContainerStatus names.

export interface LogQuery extends LogOptions {
  follow: boolean;
  previous: boolean;
}

/** Go's strconv.ParseBool, which kubelet's query decoding uses. */
function parseBool(name: string, v: string): boolean {
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(v)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(v)) return false;
  throw new KubeletApiError(400, `${name}: invalid value "${v}": must be true or false`);
}

function parseInt64(name: string, v: string, min: number): number {
  if (!/^-?\d+$/.test(v)) throw new KubeletApiError(400, `${name}: invalid value "${v}": must be an integer`);
  const n = Number(v);
  if (n < min) throw new KubeletApiError(400, `${name}: invalid value ${v}: must be greater than or equal to ${min}`);
  return n;
}

export function parseLogQuery(q: URLSearchParams, now: () => number = Date.now): LogQuery {
  const one = (name: string): string | undefined => q.get(name) ?? undefined;
  const out: LogQuery = { follow: false, previous: false };
  const follow = one('follow');
  if (follow !== undefined) out.follow = parseBool('follow', follow);
  const previous = one('previous');
  if (previous !== undefined) out.previous = parseBool('previous', previous);
  const timestamps = one('timestamps');
  if (timestamps !== undefined) out.timestamps = parseBool('timestamps', timestamps);
  const tail = one('tailLines');
  if (tail !== undefined) out.tailLines = parseInt64('tailLines', tail, 0);
  const limit = one('limitBytes');
  if (limit !== undefined) out.limitBytes = parseInt64('limitBytes', limit, 1);
  const sinceSeconds = one('sinceSeconds');
  const sinceTime = one('sinceTime');
  if (sinceSeconds !== undefined && sinceTime !== undefined) throw new KubeletApiError(400, 'sinceSeconds, sinceTime: at most one of sinceTime or sinceSeconds may be specified');
  if (sinceSeconds !== undefined) out.sinceNs = BigInt(now() - parseInt64('sinceSeconds', sinceSeconds, 1) * 1000) * 1000000n;
  if (sinceTime !== undefined) {
    const ns = rfc3339Ns(sinceTime);
    if (ns === undefined) throw new KubeletApiError(400, `sinceTime: invalid value "${sinceTime}": must be an RFC 3339 time`);
    out.sinceNs = ns;
  }
  const stream = one('stream');
  if (stream !== undefined) {
    const s = { All: 'all', Stdout: 'stdout', Stderr: 'stderr' }[stream] as LogOptions['stream'] | undefined;
    if (!s) throw new KubeletApiError(400, `stream: invalid value "${stream}": must be All, Stdout or Stderr`);
    if (s !== 'all' && out.tailLines !== undefined) throw new KubeletApiError(400, 'tailLines: cannot be used with a stream other than All');
    out.stream = s;
  }
  return out;
}

export async function serveContainerLogs(cri: CriClients, ns: string, pod: string, container: string, q: URLSearchParams, res: ServerResponse, signal: AbortSignal): Promise<void> {
  const o = parseLogQuery(q);
  const c = await findContainer(cri, ns, pod, container, o.previous);
  const st = await containerStatus(cri, c.id);
  if (!st.logPath) throw new KubeletApiError(404, `container "${container}" in pod "${pod}" has no log`);
  if (st.state === 'CONTAINER_CREATED') throw new KubeletApiError(400, `container "${container}" in pod "${pod}" is waiting to start: ContainerCreating`);
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache' });
  if (!o.follow || o.previous || st.state !== 'CONTAINER_RUNNING') {
    // Read in blocks from where the tail starts, written at the client's pace: the cost is what is sent.
    await readCriLog(st.logPath, o, (text) => writePaced(res, text), { signal });
    res.end();
    return;
  }
  res.flushHeaders();
  await followCriLog(st.logPath, {
    ...o,
    signal,
    running: async () => (await containerStatus(cri, c.id)).state === 'CONTAINER_RUNNING',
    write: (text) => writePaced(res, text),
  });
  res.end();
}

/** Writes at the client's pace: resolves when the response takes more (or is gone). */
function writePaced(res: ServerResponse, text: string): Promise<void> {
  if (res.destroyed || res.write(text)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
