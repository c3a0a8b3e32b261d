// Kubernetes resource quantities ("500m", "1.5Gi", "2e3") as exact fractions,
// so a divisor (resourceFieldRef) divides without floating-point surprises.
// The suffixes are those of k8s.io/apimachinery's resource.Quantity.

export interface Quantity {
  num: bigint;
  den: bigint;
}

const binary: Record<string, bigint> = { Ki: 1n << 10n, Mi: 1n << 20n, Gi: 1n << 30n, Ti: 1n << 40n, Pi: 1n << 50n, Ei: 1n << 60n };
const decimal: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };
const shape = /^([+-]?)(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[eE][+-]?\d+|[numkMGTPE])?$/;

/** The quantity's value, or undefined when the text is not a quantity. */
export function parseQuantity(text: string): Quantity | undefined {
  const m = shape.exec(text.trim());
  if (!m) return undefined;
  const [whole, frac = ''] = m[2]!.split('.') as [string, string | undefined];
  let num = BigInt(`${whole || '0'}${frac}`) * (m[1] === '-' ? -1n : 1n);
  let den = 10n ** BigInt(frac.length);
  const suffix = m[3] ?? '';
  let exp = 0;
  if (suffix in binary) num *= binary[suffix]!;
  else if (/^[eE]/.test(suffix)) exp = Number(suffix.slice(1));
  else exp = decimal[suffix]!;
  if (exp >= 0) num *= 10n ** BigInt(exp);
  else den *= 10n ** BigInt(-exp);
  return { num, den };
}

/** ⌈a / b⌉ for b > 0, as kubelet rounds a resource divided by its divisor. */
export function divideRoundingUp(a: Quantity, b: Quantity): bigint {
  const n = a.num * b.den;
  const d = a.den * b.num;
  const q = n / d;
  return n % d !== 0n && n > 0n === d > 0n ? q + 1n : q;
}
