// The per-token integers of a [B, T] batch (input_ids, position_ids, attention_mask, labels) as callers give
// them — rows, a flat row-major array, a typed array with its shape, or a tensor holding its values on the
// CPU — and the one function that checks and flattens them.
import { Tensor } from "../tensor/tensor.ts";

/**
 * [B, T] integers: rows (`number[][]`, or an array of typed arrays), B·T values row-major (`number[]` or an
 * Int32Array; only where the shape is known from elsewhere), `{data, shape: [B, T]}`, or an i32 Tensor made by
 * Tensor.fromArray.
 */
export type TokenBatch =
  | readonly (readonly number[] | ArrayLike<number>)[]
  | readonly number[]
  | Int32Array
  | { data: ArrayLike<number>; shape: readonly number[] }
  | Tensor;

export interface FlatBatch {
  /** B·T values, row-major. */
  data: Int32Array;
  B: number;
  T: number;
}

/** The shape a batch must have; `dims` names it in messages (default "B, T"). */
export interface BatchShape {
  B: number;
  T: number;
  dims?: string;
  /** The input the shape comes from, named in messages ("labels: is [1, 3] but input_ids is [2, 3]"). */
  of?: string;
}

/**
 * Flattens and checks a [B, T] batch: every value a 32-bit integer, every row one length. `name` starts each
 * message ("attention: position_ids"); `expect` fixes B and T (and is needed for a flat array).
 */
export function flatBatch(name: string, v: TokenBatch, expect?: BatchShape): FlatBatch {
  const fail = (why: string): never => {
    throw new Error(`${name}${why}`);
  };
  const dims = expect?.dims ?? "B, T";
  const want = expect && (expect.of ? `${expect.of} is [${expect.B}, ${expect.T}]` : `must be [${dims}] = [${expect.B}, ${expect.T}]`);
  let data: Int32Array;
  let B: number;
  let T: number;
  if (v instanceof Tensor) {
    if (v.dtype !== "i32") fail(`: a tensor of token integers must be i32, got ${v.dtype}`);
    if (!v.host) fail(": only tensors made by Tensor.fromArray carry their values on the CPU; pass the ids as arrays (await t.toArray())");
    if (v.ndim !== 2) fail(`: must be [${dims}], got a tensor of shape [${v.shape.join(", ")}]`);
    [B, T] = v.shape as [number, number];
    data = ints(name, v.host!, T);
  } else if (!Array.isArray(v) && !ArrayBuffer.isView(v) && "shape" in v) {
    const { shape, data: d } = v as { data: ArrayLike<number>; shape: readonly number[] };
    if (shape.length !== 2) fail(`: shape must be [${dims}], got [${shape.join(", ")}]`);
    [B, T] = shape as [number, number];
    if (d.length !== B * T) fail(`: ${d.length} values for shape [${B}, ${T}]`);
    data = ints(name, d, T);
  } else if (v.length > 0 && typeof v[0] !== "number") {
    const rows = v as readonly ArrayLike<number>[];
    if (typeof rows[0] !== "object") fail(": must be a batch [B, T]: an array of rows (number[][]), {data, shape}, or an i32 Tensor");
    B = rows.length;
    T = rows[0]!.length;
    // Against a named input (input_ids) the ragged rows are the first thing to say; else the expected shape.
    if (expect && !expect.of && (B !== expect.B || rows.some((r) => r.length !== expect.T))) {
      fail(` must be [${dims}] = [${expect.B}, ${expect.T}], got ${B} rows of [${rows.map((r) => r.length).join(", ")}]`);
    }
    rows.forEach((r, b) => {
      if (r.length !== T) fail(`: row ${b} has ${r.length} tokens but row 0 has ${T}: pad the rows to one length (and give an attention_mask)`);
    });
    data = new Int32Array(B * T);
    rows.forEach((r, b) => data.set(ints(name, r, T, b), b * T));
  } else {
    const flat = v as ArrayLike<number>;
    if (!expect) fail(": must be a non-empty batch [B, T]: an array of rows (number[][]), {data, shape}, or an i32 Tensor");
    [B, T] = [expect!.B, expect!.T];
    const product = dims.split(", ").map((d) => (d.includes(" ") ? `(${d})` : d)).join("·");
    if (flat.length !== B * T) fail(` has ${flat.length} values for ${product} = ${B}·${T} tokens`);
    data = ints(name, flat, T);
  }
  if (B === 0 || T === 0) fail(": is empty");
  if (expect && (B !== expect.B || T !== expect.T)) fail(`: is [${B}, ${T}] but ${want}`);
  return { data, B, T };
}

/** The values as i32, each checked (`row` is the row of a single row's values). */
function ints(name: string, d: ArrayLike<number>, T: number, row?: number): Int32Array {
  const out = new Int32Array(d.length);
  for (let i = 0; i < d.length; i++) {
    const x = d[i]!;
    if (!Number.isInteger(x) || Math.abs(x) > 0x7fffffff) {
      const [b, t] = row === undefined ? [Math.floor(i / T), i % T] : [row, i];
      throw new Error(`${name}[${b}][${t}] = ${x} is not an integer${Number.isInteger(x) ? " in the 32-bit range" : ""}`);
    }
    out[i] = x;
  }
  return out;
}
