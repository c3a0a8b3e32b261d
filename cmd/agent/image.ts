import { mkdir, mkdtemp, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';

import { imageAdminClient } from '../../proto/client.js';
import type { ImportImageResponse__Output } from '../../proto/generated/usernode/v1/ImportImageResponse.js';
import { failedPrecondition, invalidArgument } from '../../pkg/errdefs/errors.js';
import { writeRootfsLayout } from '../../pkg/image/rootfs_layout.js';
import { createLogger } from '../../pkg/log/logger.js';
import { type AgentConfig, pathsOf } from './config.js';

// `usernode image import PATH [--name NAME]` and
// `usernode image build-rootfs DIR NAME`: images for a node without a
// registry, handed to the running runtime over its socket.

export async function imageCommand(c: AgentConfig, sub: string | undefined, args: string[], name: string | undefined): Promise<number> {
  switch (sub) {
    case 'import': {
      if (args.length !== 1) throw invalidArgument('usage: usernode image import PATH [--name NAME]', { field: 'PATH' });
      return report(await importPath(c, resolve(args[0]!), name));
    }
    case 'build-rootfs': {
      if (args.length !== 2) throw invalidArgument('usage: usernode image build-rootfs DIR NAME', { field: 'DIR' });
      const [dir, imageName] = args as [string, string];
      const log = createLogger({ level: c.logLevel, component: 'image' });
      // Written where the runtime half can read it (the same path inside the node), then imported.
      const scratch = join(pathsOf(c).imagesDir, 'tmp');
      await mkdir(scratch, { recursive: true, mode: 0o700 });
      const out = await mkdtemp(join(scratch, 'build-'));
      try {
        const built = await writeRootfsLayout(resolve(dir), out, imageName, log);
        process.stdout.write(`built ${built.name} from ${dir}: ${built.entries} entries${built.skipped.length ? `, skipped ${built.skipped.length} special files` : ''}\n`);
        return report(await importPath(c, out, undefined));
      } finally {
        await rm(out, { recursive: true, force: true });
      }
    }
    default:
      throw invalidArgument(`unknown subcommand ${sub === undefined ? '(none)' : `"${sub}"`}; use import or build-rootfs`, { field: 'image' });
  }
}

async function importPath(c: AgentConfig, path: string, name: string | undefined): Promise<ImportImageResponse__Output> {
  const sock = await stat(c.criSocket).catch(() => undefined);
  if (!sock?.isSocket()) throw failedPrecondition(`usernode is not running (no socket at ${c.criSocket}); start it with "usernode run"`, { field: 'criSocket' });
  const client = imageAdminClient(c.criSocket);
  try {
    return await new Promise<ImportImageResponse__Output>((resolveP, reject) =>
      client.ImportImage({ path, name: name ?? '' }, { deadline: Date.now() + 30 * 60 * 1000 }, (err, res) => (err || !res ? reject(err ?? new Error('empty response')) : resolveP(res))),
    );
  } catch (e: unknown) {
    const details = (e as { details?: string }).details;
    throw invalidArgument(details ?? (e as Error).message, { field: 'PATH' });
  } finally {
    client.close();
  }
}

function report(r: ImportImageResponse__Output): number {
  for (const i of r.images) process.stdout.write(`imported ${i.repoTags.join(', ') || i.repoDigests.join(', ')} (${i.id})\n`);
  return 0;
}
