import { internal, notFound } from '../errdefs/errors.js';
import { runTool } from '../netns/exec_tool.js';
import type { OciRuntime, RuntimeState } from './oci_runtime.js';

// runc (Debian) as the OCI runtime, driven by its CLI with a state root of
// the agent's own.

export class RuncRuntime implements OciRuntime {
  constructor(
    private readonly runc: string,
    private readonly root: string,
  ) {}

  async state(id: string): Promise<RuntimeState | undefined> {
    const r = await this.run(['state', id]);
    if (r.code !== 0) {
      if (/does not exist|not exist|no such/i.test(r.stderr)) return undefined;
      throw internal(`runc state ${id}: ${r.stderr.trim()}`, { field: 'container_id' });
    }
    const s = JSON.parse(r.stdout) as { status: RuntimeState['status']; pid: number };
    return { status: s.status, pid: s.pid };
  }

  async start(id: string): Promise<void> {
    const r = await this.run(['start', id]);
    if (r.code !== 0) throw internal(`runc start ${id}: ${r.stderr.trim()}`, { field: 'container_id' });
  }

  async kill(id: string, signal: string, all = false): Promise<void> {
    const r = await this.run(['kill', ...(all ? ['--all'] : []), id, signal]);
    if (r.code !== 0) {
      if (/does not exist|not running|process already finished|container not running/i.test(r.stderr)) return;
      if (/does not exist/i.test(r.stderr)) throw notFound(`container ${id} not found by runc`, { field: 'container_id' });
      throw internal(`runc kill ${id} ${signal}: ${r.stderr.trim()}`, { field: 'container_id' });
    }
  }

  async delete(id: string, force: boolean): Promise<void> {
    const r = await this.run(['delete', ...(force ? ['--force'] : []), id]);
    if (r.code !== 0 && !/does not exist/i.test(r.stderr)) throw internal(`runc delete ${id}: ${r.stderr.trim()}`, { field: 'container_id' });
  }

  async update(id: string, resources: object): Promise<void> {
    const r = await this.run(['update', '--resources', '-', id], JSON.stringify(resources));
    if (r.code !== 0) {
      if (/does not exist/i.test(r.stderr)) throw notFound(`container ${id} not found by runc`, { field: 'container_id' });
      throw internal(`runc update ${id}: ${r.stderr.trim()}`, { field: 'container_id' });
    }
  }

  private run(args: string[], input?: string) {
    return runTool(this.runc, ['--root', this.root, ...args], input === undefined ? {} : { input });
  }
}
