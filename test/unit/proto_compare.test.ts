/// <reference types="node" />
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compareSchemas, describeSchema, findRepoRoot } from '../lib/proto_compare.js';
import type { SchemaDescription } from '../lib/proto_compare.js';

const BASE = `syntax = "proto3";
package runtime.v1;

service Svc {
  rpc Get(Msg) returns (Reply) {}
  rpc Watch(Msg) returns (stream Reply) {}
}

enum Color {
  RED = 0;
  GREEN = 1;
}

message Msg {
  string field = 1;
  int64 count = 2;
  repeated string tags = 3;
  map<string, string> labels = 4;
  Color color = 5;
  Inner inner = 6;
  message Inner {
    bool flag = 1;
  }
}

message Reply {
  string value = 1 [deprecated = true];
}
`;

async function describeText(text: string): Promise<SchemaDescription> {
  const dir = await mkdtemp(join(tmpdir(), 'proto-compare-'));
  try {
    const file = join(dir, 'schema.proto');
    await writeFile(file, text);
    return await describeSchema(file);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function replaceOnce(text: string, from: string, to: string): string {
  assert.ok(text.includes(from), `fixture does not contain ${JSON.stringify(from)}`);
  return text.replace(from, to);
}

async function diffAgainstBase(changed: string): Promise<string[]> {
  return compareSchemas(await describeText(changed), await describeText(BASE));
}

function assertMentions(diffs: string[], ...needles: string[]): void {
  const hit = diffs.find((d) => needles.every((n) => d.includes(n)));
  assert.ok(hit !== undefined, `expected a difference mentioning ${needles.join(' + ')}, got:\n${diffs.join('\n')}`);
}

test('describeSchema normalizes fields, enums and services', async () => {
  const d = await describeText(BASE);
  const msg = d.messages['runtime.v1.Msg'];
  assert.ok(msg !== undefined);
  assert.deepEqual(msg.fields['labels'], {
    name: 'labels', id: 4, type: 'string', rule: 'map', keyType: 'string', oneof: null, options: {},
  });
  assert.equal(msg.fields['color']?.type, 'runtime.v1.Color');
  assert.equal(msg.fields['inner']?.type, 'runtime.v1.Msg.Inner');
  assert.equal(msg.fields['tags']?.rule, 'repeated');
  assert.equal(msg.fields['field']?.rule, 'singular');
  assert.ok(d.messages['runtime.v1.Msg.Inner'] !== undefined);
  assert.deepEqual(d.messages['runtime.v1.Reply']?.fields['value']?.options, { deprecated: 'true' });
  assert.deepEqual(d.enums['runtime.v1.Color']?.values, { RED: 0, GREEN: 1 });
  assert.deepEqual(d.services['runtime.v1.Svc']?.methods['Watch'], {
    name: 'Watch', requestType: 'runtime.v1.Msg', responseType: 'runtime.v1.Reply',
    requestStream: false, responseStream: true,
  });
});

test('identical schemas compare equal', async () => {
  assert.deepEqual(await diffAgainstBase(BASE), []);
});

test('changed field number names Msg.field', async () => {
  const diffs = await diffAgainstBase(replaceOnce(BASE, 'string field = 1;', 'string field = 7;'));
  assert.equal(diffs.length, 1, diffs.join('\n'));
  assertMentions(diffs, 'Msg.field', 'field number', '7', '1');
});

test('missing RPC is reported', async () => {
  const diffs = await diffAgainstBase(replaceOnce(BASE, '  rpc Watch(Msg) returns (stream Reply) {}\n', ''));
  assert.equal(diffs.length, 1, diffs.join('\n'));
  assertMentions(diffs, 'missing RPC', 'Svc.Watch');
});

test('changed enum value is reported', async () => {
  const diffs = await diffAgainstBase(replaceOnce(BASE, 'GREEN = 1;', 'GREEN = 2;'));
  assert.equal(diffs.length, 1, diffs.join('\n'));
  assertMentions(diffs, 'Color.GREEN', 'enum value', '2', '1');
});

test('changed field type is reported', async () => {
  const diffs = await diffAgainstBase(replaceOnce(BASE, 'int64 count = 2;', 'int32 count = 2;'));
  assert.equal(diffs.length, 1, diffs.join('\n'));
  assertMentions(diffs, 'Msg.count', 'type', 'int32', 'int64');
});

test('repeated vs singular is reported as a label mismatch', async () => {
  const diffs = await diffAgainstBase(replaceOnce(BASE, 'repeated string tags = 3;', 'string tags = 3;'));
  assert.equal(diffs.length, 1, diffs.join('\n'));
  assertMentions(diffs, 'Msg.tags', 'label', 'singular', 'repeated');
});

test('other differences: messages, fields, maps, streaming, options', async () => {
  let diffs = await diffAgainstBase(replaceOnce(BASE, 'message Reply {', 'message Extra {}\n\nmessage Reply {'));
  assertMentions(diffs, 'extra message', 'runtime.v1.Extra');
  diffs = compareSchemas(await describeText(BASE), await describeText(replaceOnce(BASE, 'message Reply {', 'message Extra {}\n\nmessage Reply {')));
  assertMentions(diffs, 'missing message', 'runtime.v1.Extra');
  diffs = await diffAgainstBase(replaceOnce(BASE, '  Color color = 5;\n', ''));
  assertMentions(diffs, 'missing field', 'Msg.color');
  diffs = await diffAgainstBase(replaceOnce(BASE, 'map<string, string> labels = 4;', 'map<int32, string> labels = 4;'));
  assertMentions(diffs, 'Msg.labels', 'map key type', 'int32');
  diffs = await diffAgainstBase(replaceOnce(BASE, 'returns (stream Reply)', 'returns (Reply)'));
  assertMentions(diffs, 'Svc.Watch', 'response streaming');
  diffs = await diffAgainstBase(replaceOnce(BASE, 'rpc Get(Msg) returns (Reply)', 'rpc Get(Reply) returns (Reply)'));
  assertMentions(diffs, 'Svc.Get', 'request type', 'runtime.v1.Reply', 'runtime.v1.Msg');
  diffs = await diffAgainstBase(replaceOnce(BASE, ' [deprecated = true]', ''));
  assertMentions(diffs, 'Reply.value', 'option deprecated');
  diffs = await diffAgainstBase(replaceOnce(BASE, 'GREEN = 1;', 'GREEN = 1;\n  BLUE = 2;'));
  assertMentions(diffs, 'extra enum value', 'Color.BLUE');
});

test('our CRI proto describes RuntimeService and ImageService', async () => {
  const root = findRepoRoot(import.meta.url);
  const d = await describeSchema(join(root, 'proto', 'runtime', 'v1', 'api.proto'));
  const runtime = d.services['runtime.v1.RuntimeService'];
  assert.ok(runtime !== undefined, `services found: ${Object.keys(d.services).join(', ')}`);
  assert.ok(d.services['runtime.v1.ImageService'] !== undefined);
  const version = runtime.methods['Version'];
  assert.ok(version !== undefined);
  assert.equal(version.requestType, 'runtime.v1.VersionRequest');
  assert.equal(version.responseType, 'runtime.v1.VersionResponse');
});
