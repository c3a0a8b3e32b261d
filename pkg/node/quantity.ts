import { invalidArgument } from '../errdefs/errors.js';

// Kubernetes resource quantities (apimachinery's resource.Quantity): a signed
// decimal number with a binary suffix (Ki … Ei), a decimal suffix (n u m k M
// G T P E) or an exponent (1e3, 1E-3). Values here are plain numbers: CPU in
// cores, memory and storage in bytes, exact enough for what the node does with
// them (shares, quotas, limits).

const binary: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60 };
const decimal: Record<string, number> = { n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18 };
const shape = /^([+-]?(?:\d+\.?\d*|\.\d+))(?:([eE][+-]?\d+)|(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE])?)$/;

/** A quantity (string, or a number as YAML gives `2`) as a number of base units; the error names the field. */
export function parseQuantity(v: unknown, field: string): number {
  const s = typeof v === 'number' && Number.isFinite(v) ? String(v) : v;
  const m = typeof s === 'string' ? shape.exec(s.trim()) : null;
  if (!m) throw invalidArgument(`must be a quantity such as 100m, 1.5, 128Mi or 1G, got ${JSON.stringify(v)}`, { field });
  const n = Number(m[1]);
  const value = m[2] !== undefined ? Number(`${m[1]}${m[2]}`) : n * (binary[m[3] ?? ''] ?? decimal[m[3] ?? '']!);
  if (!Number.isFinite(value)) throw invalidArgument(`is out of range: ${JSON.stringify(v)}`, { field });
  if (value < 0) throw invalidArgument(`must not be negative, got ${JSON.stringify(v)}`, { field });
  return value;
}
