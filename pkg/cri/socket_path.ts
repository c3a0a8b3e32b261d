import { chmod, lstat, mkdir, rm, stat } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname } from 'node:path';

import { alreadyExists, failedPrecondition } from '../errdefs/errors.js';

// The CRI socket's path, made ready before anything listens on it (the node
// half checks it before starting the runtime half; the server again): kept
// apart from the server so the node half does not load the whole CRI.

/**
 * The socket folder is made 0700. An existing path is replaced only when it
 * is a socket of ours that nobody answers on (left by a crash); anything else
 * is an error naming the path.
 */
export async function prepareSocketPath(path: string, uid: number): Promise<void> {
  const dir = dirname(path);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const d = await stat(dir);
  if ((d.mode & 0o077) !== 0) await chmod(dir, 0o700);
  let st;
  try {
    st = await lstat(path);
  } catch {
    return;
  }
  if (!st.isSocket()) throw failedPrecondition(`${path} exists and is not a socket; move it away or choose another criSocket`, { field: 'criSocket' });
  if (st.uid !== uid) throw failedPrecondition(`${path} is a socket owned by uid ${st.uid}, not by this user`, { field: 'criSocket' });
  if (await answers(path)) throw alreadyExists(`another CRI server is already listening on ${path}`, { field: 'criSocket' });
  await rm(path, { force: true });
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}
