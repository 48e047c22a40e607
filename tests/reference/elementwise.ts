// float64 references for elementwise ops: forward and analytic gradients. b repeats over a's leading dims.
export type Binary = "add" | "sub" | "mul" | "div";

export function binary(op: Binary, a: Float64Array, b: Float64Array): Float64Array {
  const n = Math.max(a.length, b.length);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const x = a[i % a.length]!;
    const y = b[i % b.length]!;
    out[i] = op === "add" ? x + y : op === "sub" ? x - y : op === "mul" ? x * y : x / y;
  }
  return out;
}

export function binaryGrad(op: Binary, a: Float64Array, b: Float64Array, dy: Float64Array): [Float64Array, Float64Array] {
  const da = new Float64Array(a.length);
  const db = new Float64Array(b.length);
  for (let i = 0; i < dy.length; i++) {
    const ia = i % a.length;
    const ib = i % b.length;
    const x = a[ia]!;
    const y = b[ib]!;
    const g = dy[i]!;
    if (op === "add") (da[ia]! += g), (db[ib]! += g);
    else if (op === "sub") (da[ia]! += g), (db[ib]! -= g);
    else if (op === "mul") (da[ia]! += g * y), (db[ib]! += g * x);
    else (da[ia]! += g / y), (db[ib]! -= (g * x) / (y * y));
  }
  return [da, db];
}

export const erf = (x: number): number => {
  // Series / continued fraction via high-precision rational approximation (W. J. Cody), |err| < 1e-15.
  const ax = Math.abs(x);
  if (ax < 0.5) {
    const t = x * x;
    const p = [3.1611237438705656, 113.86415415105016, 377.485237685302, 3209.3775891384694, 0.18577770618460315];
    const q = [23.601290952344122, 244.02463793444417, 1282.6165260773723, 2844.2368334391706];
    const num = (((p[4]! * t + p[0]!) * t + p[1]!) * t + p[2]!) * t + p[3]!;
    const den = (((t + q[0]!) * t + q[1]!) * t + q[2]!) * t + q[3]!;
    return (x * num) / den;
  }
  return Math.sign(x) * (1 - erfc(ax));
};

function erfc(x: number): number {
  if (x < 4) {
    const p = [0.5641884969886701, 8.883149794388377, 66.11919063714163, 298.63513819740013, 881.952221241769, 1712.0476126340707, 2051.0783778260716, 1230.3393547979972, 2.1531153547440383e-8];
    const q = [15.744926110709835, 117.6939508913125, 537.1811018620099, 1621.3895745666903, 3290.7992357334597, 4362.619090143247, 3439.3676741437216, 1230.3393548037495];
    let num = p[8]! * x;
    let den = x;
    for (let i = 0; i < 7; i++) {
      num = (num + p[i]!) * x;
      den = (den + q[i]!) * x;
    }
    return (Math.exp(-x * x) * (num + p[7]!)) / (den + q[7]!);
  }
  const z = 1 / (x * x);
  const p = [0.30532663496123236, 0.36034489994980445, 0.12578172611122926, 0.016083785148742275, 0.0006587491615298378, 0.016315387137302097];
  const q = [2.568520192289822, 1.8729528499234604, 0.5279051029514285, 0.06051834131244132, 0.0023352049762686918];
  let num = p[5]! * z;
  let den = z;
  for (let i = 0; i < 4; i++) {
    num = (num + p[i]!) * z;
    den = (den + q[i]!) * z;
  }
  const r = (z * (num + p[4]!)) / (den + q[4]!);
  return (Math.exp(-x * x) / x) * (1 / Math.sqrt(Math.PI) - r);
}

export type Unary = "neg" | "exp" | "log" | "silu" | "gelu";
const sig = (x: number) => 1 / (1 + Math.exp(-x));
const phi = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);

export const unaryFns: Record<Unary, { f: (x: number) => number; df: (x: number) => number }> = {
  neg: { f: (x) => -x, df: () => -1 },
  exp: { f: Math.exp, df: Math.exp },
  log: { f: Math.log, df: (x) => 1 / x },
  silu: { f: (x) => x * sig(x), df: (x) => sig(x) * (1 + x * (1 - sig(x))) },
  gelu: { f: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)), df: (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + x * phi(x) },
};

export const map = (x: Float64Array, f: (v: number) => number): Float64Array => x.map(f);

/** cap · tanh(x / cap) and its derivative 1 - tanh²(x / cap) (Gemma's logit soft-capping). */
export const softcap = (x: Float64Array, cap: number): Float64Array => x.map((v) => cap * Math.tanh(v / cap));
export const softcapGrad = (x: Float64Array, cap: number, dy: Float64Array): Float64Array =>
  x.map((v, i) => dy[i]! * (1 - Math.tanh(v / cap) ** 2));
