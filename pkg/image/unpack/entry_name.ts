import { invalidArgument } from '../../errdefs/errors.js';

// A tar member name (or a hard link's link name) as components below the layer
// root. This is lexical only: `.` and empty components go, `..` pops what came
// before it in the same name. Symbolic links are the resolver's job
// (./resolve.ts); what this guarantees is that no name, read as written, points
// above the root.

export function entryComponents(name: string, entry: string, what: 'name' | 'link target' = 'name'): string[] {
  if (name.includes('\0')) {
    throw invalidArgument(`layer entry "${entry}" has a NUL byte in its ${what}`, { field: entry });
  }
  if (name.startsWith('/')) {
    throw invalidArgument(`layer entry "${entry}" has an absolute ${what} "${name}"; layer paths are relative to the root`, { field: entry });
  }
  const out: string[] = [];
  for (const c of name.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (out.length === 0) {
        throw invalidArgument(`layer entry "${entry}" has a ${what} "${name}" that climbs above the layer root`, { field: entry });
      }
      out.pop();
      continue;
    }
    out.push(c);
  }
  return out;
}
