/// <reference types="node" />
// Checks proto/runtime/v1/api.proto against the published k8s.io/cri-api
// schema at the version pinned in versions.json. Requires the go toolchain
// (to fetch or locate the module); fails, never skips, without it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { compareSchemas, describeSchema, findRepoRoot } from '../lib/proto_compare.js';

const CRI_MODULE = 'k8s.io/cri-api';
const CRI_PROTO = join('pkg', 'apis', 'runtime', 'v1', 'api.proto');
const SERVICES = ['runtime.v1.RuntimeService', 'runtime.v1.ImageService'];

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch (e: unknown) {
    void e;
    return false;
  }
}

function findGo(): string {
  const fromEnv = process.env['GO'];
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!isExecutable(fromEnv)) throw new Error(`GO=${fromEnv} is not an executable file`);
    return fromEnv;
  }
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, 'go');
    if (isExecutable(candidate)) return candidate;
  }
  const fallback = '/usr/local/go/bin/go';
  if (isExecutable(fallback)) return fallback;
  throw new Error(
    'go toolchain not found (checked $GO, PATH and /usr/local/go/bin/go); ' +
      `it is required to fetch ${CRI_MODULE} for the CRI schema conformance check`,
  );
}

function criApiVersion(root: string): string {
  const versions: unknown = JSON.parse(readFileSync(join(root, 'versions.json'), 'utf8'));
  const v = typeof versions === 'object' && versions !== null ? (versions as { criApi?: unknown }).criApi : undefined;
  if (typeof v !== 'string' || !/^v\d+\.\d+\.\d+/.test(v)) {
    throw new Error(`versions.json: criApi must be a version string like v0.37.2, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Runs `go mod download -json` and returns the module's extracted directory. */
function downloadModule(goBin: string, modVersion: string): string {
  let stdout: string;
  try {
    // Run outside any module so the download touches no go.mod/go.sum.
    stdout = execFileSync(goBin, ['mod', 'download', '-json', modVersion], {
      cwd: tmpdir(),
      encoding: 'utf8',
      env: { ...process.env, GO111MODULE: 'on' },
      timeout: 300_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e: unknown) {
    const err = e as { stdout?: unknown; stderr?: unknown; message?: unknown };
    const details = [err.stdout, err.stderr].filter((s) => typeof s === 'string' && s !== '').join('\n');
    throw new Error(`${goBin} mod download -json ${modVersion} failed: ${String(err.message)}\n${details}`);
  }
  const info: unknown = JSON.parse(stdout);
  if (typeof info !== 'object' || info === null) throw new Error(`unexpected go mod download output: ${stdout}`);
  const { Dir, Error: goError } = info as { Dir?: unknown; Error?: unknown };
  if (typeof goError === 'string' && goError !== '') throw new Error(`go mod download ${modVersion}: ${goError}`);
  if (typeof Dir !== 'string' || Dir === '') throw new Error(`go mod download ${modVersion}: no Dir in output: ${stdout}`);
  return Dir;
}

test('proto/runtime/v1/api.proto matches the published CRI v1 schema', async () => {
  const root = findRepoRoot(import.meta.url);
  const version = criApiVersion(root);
  const goBin = findGo();
  const dir = downloadModule(goBin, `${CRI_MODULE}@${version}`);
  const upstreamPath = join(dir, CRI_PROTO);
  assert.ok(existsSync(upstreamPath), `${upstreamPath} not found in ${CRI_MODULE}@${version}`);

  const ours = await describeSchema(join(root, 'proto', 'runtime', 'v1', 'api.proto'));
  const upstream = await describeSchema(upstreamPath);

  const diffs = compareSchemas(ours, upstream);
  assert.deepEqual(
    diffs,
    [],
    `proto/runtime/v1/api.proto differs from ${CRI_MODULE}@${version} (${diffs.length} differences):\n  ` +
      diffs.join('\n  '),
  );

  for (const svc of SERVICES) {
    const up = upstream.services[svc];
    assert.ok(up !== undefined, `upstream ${CRI_MODULE}@${version} has no service ${svc}`);
    const mine = ours.services[svc];
    assert.ok(mine !== undefined, `our proto has no service ${svc}`);
    const missing = Object.keys(up.methods).filter((m) => mine.methods[m] === undefined);
    assert.deepEqual(missing, [], `${svc} is missing RPCs: ${missing.join(', ')}`);
    assert.equal(Object.keys(mine.methods).length, Object.keys(up.methods).length, `${svc} RPC count`);
  }
  assert.equal(Object.keys(ours.messages).length, Object.keys(upstream.messages).length, 'message count');
  assert.equal(Object.keys(ours.enums).length, Object.keys(upstream.enums).length, 'enum count');
});
