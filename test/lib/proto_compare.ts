/// <reference types="node" />
// Normalized description and comparison of protobuf schemas, used to check
// that proto/runtime/v1/api.proto matches the published CRI v1 schema.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import type { Enum, FieldBase, MapField, Method, Namespace, ReflectionObject, Service, Type } from 'protobufjs';

/** How a field is labelled, as far as the wire format and presence go. */
export type FieldRule = 'singular' | 'repeated' | 'map' | 'optional' | 'required' | 'proto3_optional';

export interface FieldDescription {
  name: string;
  id: number;
  /** Scalar type name, or fully-qualified (no leading dot) message/enum name. */
  type: string;
  rule: FieldRule;
  /** Key type of a map field, null otherwise. */
  keyType: string | null;
  /** Name of the (real, non-synthetic) oneof this field belongs to, or null. */
  oneof: string | null;
  /** Field options (e.g. deprecated, debug_redact), values JSON-encoded. */
  options: Record<string, string>;
}

export interface MessageDescription {
  fullName: string;
  fields: Record<string, FieldDescription>;
  /** Reserved ranges ("9-9", "10-12") and names ("\"foo\""). */
  reserved: string[];
}

export interface EnumDescription {
  fullName: string;
  values: Record<string, number>;
}

export interface MethodDescription {
  name: string;
  requestType: string;
  responseType: string;
  requestStream: boolean;
  responseStream: boolean;
}

export interface ServiceDescription {
  fullName: string;
  methods: Record<string, MethodDescription>;
}

export interface SchemaDescription {
  package: string;
  messages: Record<string, MessageDescription>;
  enums: Record<string, EnumDescription>;
  services: Record<string, ServiceDescription>;
}

/**
 * Finds the repository root by walking up from `fromUrl` (an import.meta.url)
 * to the first directory whose package.json is named "usernode". Works from
 * both the TypeScript sources and the compiled dist/ tree.
 */
export function findRepoRoot(fromUrl: string): string {
  let dir = dirname(fileURLToPath(fromUrl));
  for (;;) {
    const pkgPath = join(dir, 'package.json');
    if (existsSync(pkgPath)) {
      try {
        const pkg: unknown = JSON.parse(readFileSync(pkgPath, 'utf8'));
        if (typeof pkg === 'object' && pkg !== null && (pkg as { name?: unknown }).name === 'usernode') return dir;
      } catch (e: unknown) {
        throw new Error(`cannot parse ${pkgPath}: ${e instanceof Error ? e.message : String(e)}`);
      }
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`no usernode package.json above ${fileURLToPath(fromUrl)}`);
    dir = parent;
  }
}

function stripDot(name: string): string {
  return name.startsWith('.') ? name.slice(1) : name;
}

function isMapField(f: FieldBase): f is MapField {
  return f instanceof protobuf.MapField;
}

function fieldRule(f: FieldBase): FieldRule {
  if (isMapField(f)) return 'map';
  if (f.repeated) return 'repeated';
  if (f.options?.['proto3_optional'] === true) return 'proto3_optional';
  // The label as written in the source; protobufjs keeps it but does not type it.
  const written = (f as unknown as { rule?: unknown }).rule;
  if (written === 'required') return 'required';
  if (written === 'optional') return 'optional';
  return 'singular';
}

function describeField(f: FieldBase): FieldDescription {
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(f.options ?? {})) {
    if (k === 'proto3_optional') continue;
    options[k] = JSON.stringify(v);
  }
  const resolved = f.resolvedType;
  const synthetic = f.options?.['proto3_optional'] === true;
  return {
    name: f.name,
    id: f.id,
    type: resolved !== null ? stripDot(resolved.fullName) : f.type,
    rule: fieldRule(f),
    keyType: isMapField(f) ? f.keyType : null,
    oneof: f.partOf !== null && !synthetic ? f.partOf.name : null,
    options,
  };
}

function describeReserved(t: Type): string[] {
  const out: string[] = [];
  for (const r of t.reserved ?? []) {
    if (typeof r === 'string') out.push(JSON.stringify(r));
    else out.push(`${r[0]}-${r[1]}`);
  }
  return out.sort();
}

function describeMethod(m: Method): MethodDescription {
  const req = m.resolvedRequestType;
  const res = m.resolvedResponseType;
  return {
    name: m.name,
    requestType: req !== null ? stripDot(req.fullName) : m.requestType,
    responseType: res !== null ? stripDot(res.fullName) : m.responseType,
    requestStream: m.requestStream === true,
    responseStream: m.responseStream === true,
  };
}

function walk(obj: ReflectionObject, out: SchemaDescription): void {
  if (obj instanceof protobuf.Type) {
    const t = obj as Type;
    const fields: Record<string, FieldDescription> = {};
    for (const f of t.fieldsArray) fields[f.name] = describeField(f);
    const fullName = stripDot(t.fullName);
    out.messages[fullName] = { fullName, fields, reserved: describeReserved(t) };
    for (const nested of t.nestedArray) walk(nested, out);
  } else if (obj instanceof protobuf.Enum) {
    const e = obj as Enum;
    const fullName = stripDot(e.fullName);
    out.enums[fullName] = { fullName, values: { ...e.values } };
  } else if (obj instanceof protobuf.Service) {
    const s = obj as Service;
    const fullName = stripDot(s.fullName);
    const methods: Record<string, MethodDescription> = {};
    for (const m of s.methodsArray) methods[m.name] = describeMethod(m);
    out.services[fullName] = { fullName, methods };
  } else if (obj instanceof protobuf.Namespace) {
    for (const nested of (obj as Namespace).nestedArray) walk(nested, out);
  }
}

/**
 * Loads a .proto file (keeping field names as written) and describes every
 * message, enum and service under the given package namespace.
 */
export async function describeSchema(protoFilePath: string, pkg = 'runtime.v1'): Promise<SchemaDescription> {
  const root = await new protobuf.Root().load(protoFilePath, { keepCase: true });
  root.resolveAll();
  const ns = root.lookup(pkg);
  if (ns === null || !(ns instanceof protobuf.Namespace)) {
    throw new Error(`${protoFilePath}: package ${pkg} not found`);
  }
  const out: SchemaDescription = { package: pkg, messages: {}, enums: {}, services: {} };
  for (const nested of ns.nestedArray) walk(nested, out);
  return out;
}

function sortedKeys(...records: Record<string, unknown>[]): string[] {
  const keys = new Set<string>();
  for (const r of records) for (const k of Object.keys(r)) keys.add(k);
  return [...keys].sort();
}

function show(v: string | null): string {
  return v === null ? '(none)' : v;
}

function compareFields(msg: string, ours: FieldDescription, up: FieldDescription, diffs: string[]): void {
  const where = `${msg}.${ours.name}`;
  if (ours.id !== up.id) diffs.push(`${where}: field number ${ours.id} (ours) != ${up.id} (upstream)`);
  if (ours.type !== up.type) diffs.push(`${where}: type ${ours.type} (ours) != ${up.type} (upstream)`);
  if (ours.rule !== up.rule) diffs.push(`${where}: label ${ours.rule} (ours) != ${up.rule} (upstream)`);
  if (ours.keyType !== up.keyType) {
    diffs.push(`${where}: map key type ${show(ours.keyType)} (ours) != ${show(up.keyType)} (upstream)`);
  }
  if (ours.oneof !== up.oneof) {
    diffs.push(`${where}: oneof ${show(ours.oneof)} (ours) != ${show(up.oneof)} (upstream)`);
  }
  for (const k of sortedKeys(ours.options, up.options)) {
    const a = ours.options[k];
    const b = up.options[k];
    if (a !== b) diffs.push(`${where}: option ${k} ${a ?? '(unset)'} (ours) != ${b ?? '(unset)'} (upstream)`);
  }
}

/**
 * Lists every difference between two schema descriptions in readable form.
 * An empty result means the schemas are identical in everything compared.
 */
export function compareSchemas(ours: SchemaDescription, upstream: SchemaDescription): string[] {
  const diffs: string[] = [];

  for (const name of sortedKeys(ours.messages, upstream.messages)) {
    const a = ours.messages[name];
    const b = upstream.messages[name];
    if (a === undefined) { diffs.push(`missing message ${name} (present upstream)`); continue; }
    if (b === undefined) { diffs.push(`extra message ${name} (not upstream)`); continue; }
    for (const field of sortedKeys(a.fields, b.fields)) {
      const fa = a.fields[field];
      const fb = b.fields[field];
      if (fa === undefined) { diffs.push(`missing field ${name}.${field} = ${fb?.id} (present upstream)`); continue; }
      if (fb === undefined) { diffs.push(`extra field ${name}.${field} = ${fa.id} (not upstream)`); continue; }
      compareFields(name, fa, fb, diffs);
    }
    const ra = a.reserved.join(', ');
    const rb = b.reserved.join(', ');
    if (ra !== rb) diffs.push(`${name}: reserved [${ra}] (ours) != [${rb}] (upstream)`);
  }

  for (const name of sortedKeys(ours.enums, upstream.enums)) {
    const a = ours.enums[name];
    const b = upstream.enums[name];
    if (a === undefined) { diffs.push(`missing enum ${name} (present upstream)`); continue; }
    if (b === undefined) { diffs.push(`extra enum ${name} (not upstream)`); continue; }
    for (const v of sortedKeys(a.values, b.values)) {
      const va = a.values[v];
      const vb = b.values[v];
      if (va === undefined) diffs.push(`missing enum value ${name}.${v} = ${vb} (present upstream)`);
      else if (vb === undefined) diffs.push(`extra enum value ${name}.${v} = ${va} (not upstream)`);
      else if (va !== vb) diffs.push(`${name}.${v}: enum value ${va} (ours) != ${vb} (upstream)`);
    }
  }

  for (const name of sortedKeys(ours.services, upstream.services)) {
    const a = ours.services[name];
    const b = upstream.services[name];
    if (a === undefined) { diffs.push(`missing service ${name} (present upstream)`); continue; }
    if (b === undefined) { diffs.push(`extra service ${name} (not upstream)`); continue; }
    for (const m of sortedKeys(a.methods, b.methods)) {
      const ma = a.methods[m];
      const mb = b.methods[m];
      const where = `${name}.${m}`;
      if (ma === undefined) { diffs.push(`missing RPC ${where} (present upstream)`); continue; }
      if (mb === undefined) { diffs.push(`extra RPC ${where} (not upstream)`); continue; }
      if (ma.requestType !== mb.requestType) {
        diffs.push(`${where}: request type ${ma.requestType} (ours) != ${mb.requestType} (upstream)`);
      }
      if (ma.responseType !== mb.responseType) {
        diffs.push(`${where}: response type ${ma.responseType} (ours) != ${mb.responseType} (upstream)`);
      }
      if (ma.requestStream !== mb.requestStream) {
        diffs.push(`${where}: request streaming ${ma.requestStream} (ours) != ${mb.requestStream} (upstream)`);
      }
      if (ma.responseStream !== mb.responseStream) {
        diffs.push(`${where}: response streaming ${ma.responseStream} (ours) != ${mb.responseStream} (upstream)`);
      }
    }
  }

  return diffs;
}
