import { Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';

import { Decompress } from 'fzstd';

// Layer blobs come as tar, tar+gzip or tar+zstd (image-spec media types
// …tar, …tar+gzip, …tar+zstd); the manifest's media type is not trusted for
// this, the first bytes are.

export type Compression = 'gzip' | 'zstd' | 'none';

const GZIP_MAGIC = Buffer.from([0x1f, 0x8b]);
/** RFC 8878 §3.1.1: 0xFD2FB528, little-endian. */
const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** Bytes detectCompression needs to tell the formats apart. */
export const COMPRESSION_HEAD_BYTES = ZSTD_MAGIC.length;

export function detectCompression(head: Buffer): Compression {
  if (head.length >= GZIP_MAGIC.length && head.subarray(0, GZIP_MAGIC.length).equals(GZIP_MAGIC)) return 'gzip';
  if (head.length >= ZSTD_MAGIC.length && head.subarray(0, ZSTD_MAGIC.length).equals(ZSTD_MAGIC)) return 'zstd';
  return 'none';
}

/** A stream that decompresses `compression`, or undefined for none. */
export function decompressor(compression: Compression): Transform | undefined {
  switch (compression) {
    case 'gzip':
      return createGunzip();
    case 'zstd':
      return new ZstdDecompressStream();
    case 'none':
      return undefined;
  }
}

/** fzstd's streaming decoder as a Node Transform. */
export class ZstdDecompressStream extends Transform {
  private readonly decoder: Decompress;

  constructor() {
    super();
    // fzstd may reuse the array it hands out: copy before pushing.
    this.decoder = new Decompress((data) => {
      if (data.length > 0) this.push(Buffer.from(data));
    });
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    try {
      this.decoder.push(chunk);
      callback();
    } catch (e: unknown) {
      callback(zstdError(e));
    }
  }

  override _flush(callback: TransformCallback): void {
    try {
      this.decoder.push(new Uint8Array(0), true);
      callback();
    } catch (e: unknown) {
      callback(zstdError(e));
    }
  }
}

function zstdError(e: unknown): Error {
  return new Error(`zstd: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
}

/**
 * Reads the first `n` bytes of src without losing them: returns them and a
 * stream that yields everything src does, from its first byte.
 */
export async function peekHead(src: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length < n) {
    const chunk: unknown = src.read();
    if (chunk !== null) {
      const b = Buffer.isBuffer(chunk) ? chunk : typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
      chunks.push(b);
      length += b.length;
      continue;
    }
    if (src.readableEnded || src.destroyed) break;
    await new Promise<void>((resolve, reject) => {
      function cleanup(): void {
        src.off('readable', done);
        src.off('end', done);
        src.off('close', done);
        src.off('error', fail);
      }
      function done(): void {
        cleanup();
        resolve();
      }
      function fail(e: unknown): void {
        cleanup();
        reject(e instanceof Error ? e : new Error(String(e)));
      }
      src.on('readable', done);
      src.on('end', done);
      src.on('close', done);
      src.on('error', fail);
    });
  }
  const head = Buffer.concat(chunks);
  if (src.readableEnded) return { head, stream: Readable.from(head.length > 0 ? [head] : []) };
  if (head.length > 0) src.unshift(head);
  return { head, stream: src };
}
