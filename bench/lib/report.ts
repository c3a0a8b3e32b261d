import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';

import type { BenchFacts } from './session.js';
import type { Summary } from './stats.js';

// BENCHMARKS.md: one file, one marked section per benchmark
// (<!-- bench:NAME:start … --> … <!-- bench:NAME:end -->), each rewritten in
// place by its own benchmark so a run of one leaves the others' results alone.

const header =
  '# Benchmarks\n\nSide by side, in one run on one machine: usernode against rootless containerd 1.6 (Debian) doing the same work. Times are medians of N runs on a small, noisy machine; read the ratios, not the milliseconds.\n\n';

/** The opening marker of section `name`, written by `script`. */
export const sectionStart = (name: string, script: string): string => `<!-- bench:${name}:start (written by ${script}; do not edit by hand) -->`;
export const sectionEnd = (name: string): string => `<!-- bench:${name}:end -->`;

/** Replaces section `name` of the file `out` with `md` (which carries both markers), or appends it. */
export async function writeSection(out: string, name: string, md: string): Promise<void> {
  const path = resolve(out);
  let text = await readFile(path, 'utf8').catch(() => header);
  const start = text.indexOf(`<!-- bench:${name}:start`);
  const endMarker = sectionEnd(name);
  const end = text.indexOf(endMarker);
  if (start >= 0 && end > start) {
    const rest = text.slice(end + endMarker.length).replace(/^\n+/, '');
    text = text.slice(0, start) + md + (rest ? `\n${rest}` : '');
  } else text = `${text.replace(/\n*$/, '\n\n')}${md}`;
  await writeFile(path, text);
}

/** The machine and versions, as list items; `extra` goes after the storage line. */
export function machineLines(f: BenchFacts | undefined, extra: string[] = []): string[] {
  const m = f?.machine;
  return [
    'Machine:',
    '',
    `- ${m?.cpus ?? '?'} CPUs (${m?.cpuModel ?? '?'}), ${m?.memory ?? '?'} memory, kernel ${m?.kernel ?? '?'}, ${m?.os ?? '?'}`,
    `- storage of both runtimes: ${m?.filesystem ?? '?'}`,
    ...extra,
    `- Node.js ${m?.node ?? '?'}`,
    ...Object.entries(f?.versions ?? {}).map(([k, v]) => `- ${k}: ${v}`),
  ];
}

export const fmt = (x: number, digits = 0): string => (Number.isFinite(x) ? x.toFixed(digits) : '–');

/** A table row: what, usernode median (min–max), containerd median (min–max), usernode/containerd. */
export function ratioRow(what: string, u: Summary, c: Summary, digits = 0): string {
  return `| ${what} | ${fmt(u.median, digits)} | ${fmt(u.min, digits)}–${fmt(u.max, digits)} | ${fmt(c.median, digits)} | ${fmt(c.min, digits)}–${fmt(c.max, digits)} | ${fmt(u.median / c.median, 2)} |`;
}

const notedLines = (odd: readonly string[]): string[] => (odd.length ? ['', 'Noted during the run:', '', ...odd.map((o) => `- ${o}`)] : []);

/** The end of section `name`: what went odd, how to reproduce it, the closing marker. */
export function sectionTail(name: string, odd: readonly string[], more = ''): string[] {
  return [...notedLines(odd), '', `Reproduce (as root; runs the runtimes as the unprivileged \`usernode-test\`): \`bash bench/run.sh --only ${name}\`${more}.`, sectionEnd(name), ''];
}

/** Writes section `name` into --out and everything measured into --json, where given. */
export async function writeResults(v: { out?: string | undefined; json?: string | undefined }, name: string, md: string, json: unknown): Promise<void> {
  if (v.out) {
    await writeSection(v.out, name, md);
    process.stdout.write(`bench: wrote ${resolve(v.out)}\n`);
  }
  if (v.json) await writeFile(resolve(v.json), `${JSON.stringify(json, null, 2)}\n`);
}
