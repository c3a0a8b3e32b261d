import { resourceExhausted } from '../errdefs/errors.js';

// A full disk (or quota) while writing content or unpacking is its own clear
// error — RESOURCE_EXHAUSTED naming the folder — not an opaque internal one.
export function diskFullError(e: unknown, where: string): Error | undefined {
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 5; cur = (cur as { cause?: unknown }).cause, depth++) {
    const code = (cur as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC' || code === 'EDQUOT' || /\bENOSPC\b|\bEDQUOT\b/.test(cur.message)) {
      return resourceExhausted(`no space left on the disk holding ${where} (${code ?? 'ENOSPC'}): free some space or remove unused images`, { field: where, cause: e });
    }
  }
  return undefined;
}
