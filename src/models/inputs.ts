// The per-token integer inputs of a forward pass (input_ids, position_ids, attention_mask, labels) as the
// caller gives them — nested arrays, a typed array with a shape, or a tensor — checked and flattened.
import { Tensor } from "../tensor/tensor.ts";

/** [B, T] integers: `number[][]`, `{data, shape: [B, T]}` (data a typed array or number[]), or an i32 Tensor made by Tensor.fromArray. */
export type TokenBatch = readonly (readonly number[] | ArrayLike<number>)[] | { data: ArrayLike<number>; shape: readonly number[] } | Tensor;

export interface FlatBatch {
  /** B·T values, row-major. */
  data: Int32Array;
  B: number;
  T: number;
}

/** Flattens and checks a [B, T] batch (`name` is used in messages; `expect` fixes B and T). */
export function flatBatch(name: string, v: TokenBatch, expect?: { B: number; T: number }): FlatBatch {
  let data: Int32Array;
  let B: number;
  let T: number;
  const fail = (why: string): never => {
    throw new Error(`${name}: ${why}`);
  };
  if (v instanceof Tensor) {
    if (v.dtype !== "i32") fail(`a tensor of token integers must be i32, got ${v.dtype}`);
    if (!v.host) fail("only tensors made by Tensor.fromArray carry their values on the CPU; pass the ids as arrays (await t.toArray())");
    if (v.ndim !== 2) fail(`must be [B, T], got a tensor of shape [${v.shape.join(", ")}]`);
    [B, T] = v.shape as [number, number];
    data = Int32Array.from(v.host!);
  } else if ("shape" in v && "data" in v && !Array.isArray(v)) {
    const { shape } = v as { data: ArrayLike<number>; shape: readonly number[] };
    if (shape.length !== 2) fail(`shape must be [B, T], got [${shape.join(", ")}]`);
    [B, T] = shape as [number, number];
    const d = (v as { data: ArrayLike<number> }).data;
    if (d.length !== B * T) fail(`${d.length} values for shape [${B}, ${T}]`);
    data = new Int32Array(B * T);
    for (let i = 0; i < B * T; i++) data[i] = d[i]!;
    checkInts(name, d, T);
  } else {
    const rows = v as readonly ArrayLike<number>[];
    if (!Array.isArray(rows) || rows.length === 0 || typeof rows[0] !== "object") {
      fail("must be a non-empty batch [B, T]: an array of rows (number[][]), {data, shape}, or an i32 Tensor");
    }
    B = rows.length;
    T = rows[0]!.length;
    rows.forEach((r, b) => {
      if (r.length !== T) fail(`row ${b} has ${r.length} tokens but row 0 has ${T}: pad the rows to one length (and give an attention_mask)`);
    });
    data = new Int32Array(B * T);
    rows.forEach((r, b) => {
      checkInts(name, r, T, b);
      for (let t = 0; t < T; t++) data[b * T + t] = r[t]!;
    });
  }
  if (B === 0 || T === 0) fail("is empty");
  if (expect && (B !== expect.B || T !== expect.T)) fail(`is [${B}, ${T}] but input_ids is [${expect.B}, ${expect.T}]`);
  return { data, B, T };
}

function checkInts(name: string, d: ArrayLike<number>, T: number, row?: number): void {
  for (let i = 0; i < d.length; i++) {
    const x = d[i]!;
    if (!Number.isInteger(x) || Math.abs(x) > 0x7fffffff) {
      const [b, t] = row === undefined ? [Math.floor(i / T), i % T] : [row, i];
      throw new Error(`${name}[${b}][${t}] = ${x} is not a 32-bit integer`);
    }
  }
}
