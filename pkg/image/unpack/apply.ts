import { realpath, stat } from 'node:fs/promises';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { extract as tarExtract } from 'tar-stream';

import { invalidArgument, isDomainError, messageOf } from '../../errdefs/errors.js';
import type { ApplyOptions, ApplyResult } from './apply_options.js';
import { COMPRESSION_HEAD_BYTES, decompressor, detectCompression, peekHead } from './compression.js';
import { readLayerEntry } from './layer_entry.js';
import { LayerWriter } from './layer_writer.js';

// Applies one OCI layer (image-spec layer.md: a changeset of added, changed
// and whited-out paths) to a directory, as an unprivileged user or as uid 0 of
// the node's user namespace. The layer is hostile until proven otherwise: no
// member may write, create, chmod, chown or delete anything outside target —
// see ./entry_name.ts (names) and ./resolve.ts (symbolic links on the way).
//
// On failure or abort the promise rejects and target holds a partial layer:
// the caller removes target (a failed layer is never used). The tree below
// target must not be changed by anyone else while the layer is applied.

export type { ApplyOptions, ApplyResult, SkippedEntry, UnpackTools } from './apply_options.js';
export { type Compression, detectCompression } from './compression.js';

/**
 * Applies the layer blob read from input (tar, tar+gzip or tar+zstd, told apart
 * by its first bytes) to target, an existing directory. Rejects with a domain
 * error naming the offending entry (InvalidArgument for a bad or hostile
 * layer), the input's own error if the input fails, or the signal's reason on
 * abort; the streams are destroyed then, and the caller removes target.
 */
export async function applyLayer(input: NodeJS.ReadableStream | Readable, target: string, opts: ApplyOptions): Promise<ApplyResult> {
  const { signal } = opts;
  const source = input instanceof Readable ? input : new Readable().wrap(input);
  const streams: Array<{ destroy(): unknown }> = [source];
  // Without an error: nobody may be listening for one any more, and the
  // rejection below carries the reason.
  const destroyAll = (): void => {
    for (const s of streams) s.destroy();
  };
  const onAbort = (): void => destroyAll();
  // The caller's stream failing (a dropped connection) is its own error, not a bad layer.
  let inputError: unknown;
  source.on('error', (e: unknown) => {
    inputError ??= e;
  });
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    signal?.throwIfAborted();
    const root = await layerRoot(target);
    const { head, stream } = await peekHead(source, COMPRESSION_HEAD_BYTES);
    const compression = detectCompression(head);
    const decompress = decompressor(compression);
    const extract = tarExtract();
    streams.push(stream, ...(decompress ? [decompress] : []), extract);
    const stages: Array<Readable | Writable> = [stream, ...(decompress ? [decompress] : []), extract as unknown as Writable];
    const feeding = pipeline(stages).catch((e: unknown) => {
      throw formatError(compression, e);
    });
    // Until it is awaited below, a failure of the pipeline also surfaces through the extract iterator.
    feeding.catch(() => {});

    const writer = new LayerWriter(root, opts);
    let entries = 0;
    try {
      for await (const member of extract) {
        signal?.throwIfAborted();
        entries++;
        await writer.apply(readLayerEntry(member.header), buffers(member));
        member.resume(); // Whatever the writer did not read (a skipped device's data, say).
      }
    } catch (e: unknown) {
      if (isDomainError(e) || signal?.aborted) throw e;
      throw formatError(compression, e);
    }
    await feeding;
    await writer.finish();
    signal?.throwIfAborted();
    opts.log.debug('layer applied', { target, compression, entries, bytes: writer.bytesWritten, skipped: writer.skipped.length });
    return { entries, bytesWritten: writer.bytesWritten, skipped: writer.skipped };
  } catch (e: unknown) {
    destroyAll();
    if (signal?.aborted) throw abortReason(signal);
    if (inputError !== undefined && e instanceof Error && (e === inputError || e.cause === inputError)) throw inputError;
    throw e;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

async function* buffers(chunks: AsyncIterable<unknown>): AsyncGenerator<Buffer> {
  for await (const c of chunks) yield Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array);
}

async function layerRoot(target: string): Promise<string> {
  let root: string;
  try {
    root = await realpath(target);
  } catch (e: unknown) {
    throw invalidArgument(`layer target "${target}": ${messageOf(e)}`, { field: 'target', cause: e });
  }
  if (!(await stat(root)).isDirectory()) throw invalidArgument(`layer target "${target}" is not a directory`, { field: 'target' });
  return root;
}

function formatError(compression: string, e: unknown): Error {
  if (isDomainError(e)) return e;
  const what = compression === 'none' ? 'tar' : `${compression}-compressed tar`;
  return invalidArgument(`layer is not a valid ${what} stream: ${messageOf(e)}`, { field: 'layer', cause: e });
}

function abortReason(signal: AbortSignal | undefined): Error {
  const reason: unknown = signal?.reason;
  if (reason instanceof Error) return reason;
  return new DOMException('The layer apply was aborted', 'AbortError');
}
