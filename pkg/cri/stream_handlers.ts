import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { pipeline } from 'node:stream/promises';

import { failedPrecondition } from '../errdefs/errors.js';
import { dialInPod } from '../netns/pod_dial.js';
import { followCriLog } from '../sandbox/cri_log_follow.js';
import { startStreamExec } from '../sandbox/runc_exec_stream.js';
import type { StreamingHandlers } from '../streaming/server.js';
import { refresh } from './containers.js';
import type { CriContext } from './context.js';

// What the streaming server does once a client is connected: run the
// command (Exec) with the session's streams, join the container's own stdio
// (Attach), dial the pod's ports (PortForward). A client that goes away ends
// the command; leaving an attach leaves the container running.

export interface StreamTools {
  script: string;
  stty: string;
  nsenter: string;
  socat: string;
}

const discard = (): Writable => new Writable({ write: (_c, _e, done) => done() });

export function streamingHandlers(ctx: () => CriContext, tools: StreamTools): StreamingHandlers {
  return {
    async exec(req, session) {
      const c = ctx().containers;
      const r = await refresh(c.store.get(req.containerId), c);
      if (r.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${r.id} is not running`, { field: 'container_id' });
      const x = await startStreamExec({ runc: c.runc, root: c.runcRoot, bundle: r.bundle, containerId: r.id, cmd: req.cmd, tty: req.tty, stdin: req.stdin, script: tools.script, stty: tools.stty });
      void session.gone.then(() => x.kill());
      if (session.stdin && x.stdin) {
        // The command may end before its input does (EPIPE): not an error of the session.
        (x.stdin as Writable).on('error', () => undefined);
        session.stdin.pipe(x.stdin as NodeJS.WritableStream & Writable);
      }
      session.resize.listen((s) => void x.resize(s.width, s.height).catch(() => undefined));
      // A client that vanished breaks these pipes: that is its leaving, not an error (caught at once: unhandled, it would end the process).
      const outs = [pipeline(x.stdout, session.stdout ?? discard()).catch(() => undefined), pipeline(x.stderr, session.stderr ?? discard()).catch(() => undefined)];
      const exitCode = await x.exit;
      await Promise.allSettled(outs);
      await session.finish({ exitCode });
    },
    async attach(req, session) {
      const c = ctx().containers;
      const r = await refresh(c.store.get(req.containerId), c);
      if (r.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${r.id} is not running`, { field: 'container_id' });
      const config = r.config as { stdin?: boolean };
      // Output: the container's log from now on; input: conmon's attach socket.
      const follower = await followCriLog(r.logPath, { ...(session.stdout ? { stdout: session.stdout } : {}), ...(session.stderr ? { stderr: session.stderr } : {}) });
      let input: ChildProcess | undefined;
      if (session.stdin && config.stdin) {
        input = spawn(tools.socat, ['-', `UNIX-CONNECT:${join(c.socketDir, r.id, 'attach')},type=5`], { stdio: ['pipe', 'ignore', 'ignore'] });
        input.on('error', () => undefined);
        input.stdin!.on('error', () => undefined);
        session.stdin.pipe(input.stdin!);
      } else {
        session.stdin?.resume();
      }
      session.resize.listen((s) => void c.monitor.resizeTerminal(r.bundle, s.width, s.height).catch(() => undefined));
      // Until the client leaves or the container ends.
      let left = false;
      void session.gone.then(() => (left = true));
      while (!left && (await refresh(c.store.get(r.id), c).catch(() => undefined))?.state === 'CONTAINER_RUNNING') await sleep(500);
      follower.stop();
      input?.kill();
      if (!left) await session.finish({ exitCode: 0 });
    },
    checkContainer(containerId) {
      ctx().containers.store.get(containerId);
    },
    portForward(req) {
      const r = ctx().pods.store.get(req.podSandboxId);
      return (port) => dialInPod({ nsenter: tools.nsenter, socat: tools.socat }, r.namespaces.net, port);
    },
  };
}
