import { mkdir, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { watch, type FSWatcher } from 'chokidar';

import type { Logger } from '../log/logger.js';
import { parseManifest, type PodManifest } from './pod_manifest.js';

// Static pods, as kubelet's staticPodPath: every *.yaml, *.yml and *.json file
// of one folder holds pods the node runs without a control plane. The folder
// is watched (chokidar): a file added, changed or removed changes the pods. A
// file that does not parse, or names a pod another file already has, is
// reported and keeps the pods it last had; the other files are unaffected.

const manifestFile = /\.(ya?ml|json)$/;

export class StaticPods {
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The pods each file last gave, good ones only. */
  private readonly lastGood = new Map<string, PodManifest[]>();

  constructor(
    private readonly dir: string,
    private readonly onPods: (pods: PodManifest[]) => void,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    // Made if missing: a folder that appears later would not be watched.
    await mkdir(this.dir, { recursive: true, mode: 0o700 }).catch((e: Error) => this.log.warn('cannot make the static pod folder', { dir: this.dir, error: e.message }));
    // Watching first, scanning once it is ready: a file written meanwhile is seen by one or the other.
    this.watcher = watch(this.dir, { ignoreInitial: true, depth: 0, awaitWriteFinish: { stabilityThreshold: 150, pollInterval: 50 } });
    this.watcher.on('all', () => this.soon());
    this.watcher.on('error', (e: unknown) => this.log.warn('watching the static pod folder failed', { dir: this.dir, error: (e as Error).message }));
    await new Promise<void>((resolve) => this.watcher!.once('ready', () => resolve()));
    await this.scan();
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.watcher?.close();
  }

  private soon(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.scan(), 100);
  }

  private async scan(): Promise<void> {
    const files = (await readdir(this.dir).catch(() => [] as string[])).filter((f) => manifestFile.test(f) && !f.startsWith('.')).sort();
    for (const gone of [...this.lastGood.keys()].filter((f) => !files.includes(f))) this.lastGood.delete(gone);
    const taken = new Map<string, string>();
    for (const f of files) {
      const path = join(this.dir, f);
      try {
        const pods = parseManifest(await readFile(path, 'utf8'), path);
        for (const p of pods) {
          const key = `${p.namespace}/${p.name}`;
          const other = taken.get(key);
          if (other && other !== f) throw new Error(`pod ${key} is already defined in ${other}`);
        }
        this.lastGood.set(f, pods);
      } catch (e: unknown) {
        this.log.warn('static pod manifest refused; its pods stay as they were', { file: path, error: (e as Error).message });
      }
      for (const p of this.lastGood.get(f) ?? []) if (!taken.has(`${p.namespace}/${p.name}`)) taken.set(`${p.namespace}/${p.name}`, f);
    }
    const pods = files.flatMap((f) => (this.lastGood.get(f) ?? []).filter((p) => taken.get(`${p.namespace}/${p.name}`) === f));
    this.onPods(pods);
  }
}
