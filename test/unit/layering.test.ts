import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { test } from 'node:test';

import { findRepoRoot } from '../lib/proto_compare.js';

// DESIGN.md's dependency rules, checked on the source: cmd → (node, cri);
// cri → (image, sandbox, netns) → errdefs; pkg/node reaches the runtime only
// through the CRI client; drivers never import grpc-js or the Kubernetes
// client; and no import cycles.

const root = findRepoRoot(import.meta.url);

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (name === 'generated' || name === 'node_modules') continue;
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

const files = ['cmd', 'pkg', 'proto'].flatMap((d) => sources(join(root, d)));

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+['"]([^'"]+)['"]|^\s*import\s+['"]([^'"]+)['"]/gm)].map((m) => (m[1] ?? m[2])!);
}

function resolveLocal(file: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  return relative(root, resolve(dirname(file), spec.replace(/\.js$/, '.ts')));
}

const graph = new Map(files.map((f) => [relative(root, f), importsOf(f).map((s) => resolveLocal(f, s) ?? s)]));

test('sandbox, netns, image, errdefs and log never import grpc-js, the Kubernetes client, cri, node or cmd', () => {
  const bad: string[] = [];
  for (const [file, deps] of graph) {
    if (!/^pkg\/(sandbox|netns|image|errdefs|log)\//.test(file)) continue;
    for (const d of deps) {
      if (/^@grpc\/|^@kubernetes\/|^pkg\/(cri|node)\/|^cmd\/|^proto\//.test(d)) bad.push(`${file} → ${d}`);
    }
  }
  assert.deepEqual(bad, []);
});

test('errdefs is a leaf', () => {
  const bad = [...graph].flatMap(([f, deps]) => (f.startsWith('pkg/errdefs/') ? deps.filter((d) => d.startsWith('pkg/') && !d.startsWith('pkg/errdefs/')) : []));
  assert.deepEqual(bad, []);
});

test('pkg/node reaches the runtime only through the CRI client, never pkg/cri', () => {
  const bad = [...graph].flatMap(([f, deps]) => (f.startsWith('pkg/node/') ? deps.filter((d) => d.startsWith('pkg/cri/') || d.startsWith('cmd/')) : []));
  assert.deepEqual(bad, []);
});

test('no package imports cmd/', () => {
  const bad = [...graph].flatMap(([f, deps]) => (f.startsWith('pkg/') || f.startsWith('proto/') ? deps.filter((d) => d.startsWith('cmd/')).map((d) => `${f} → ${d}`) : []));
  assert.deepEqual(bad, []);
});

test('no circular imports', () => {
  const state = new Map<string, 'visiting' | 'done'>();
  const cycles: string[] = [];
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'visiting') {
      cycles.push([...path.slice(path.indexOf(f)), f].join(' → '));
      return;
    }
    state.set(f, 'visiting');
    for (const d of graph.get(f) ?? []) if (graph.has(d)) visit(d, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f, []);
  assert.deepEqual(cycles, []);
  assert.ok(graph.size > 20, `only ${graph.size} source files found; the scan is broken`);
});
