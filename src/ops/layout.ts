// Shape ops and their gradients: reshape (a view), transpose, slice and concat (copies).
// Copies move 4-byte elements, so they take f32 and i32 tensors (token ids too); reshape takes any dtype.
import * as K from "../kernels/layout.ts";
import { full, numel, record, storageBytes, Tensor } from "../tensor/tensor.ts";

const fmt = (shape: readonly number[]) => `[${shape.join(", ")}]`;

/** `dim` counted from the end when negative, as in torch; throws when outside [-ndim, ndim). */
function normDim(op: string, x: Tensor, dim: number): number {
  if (!Number.isInteger(dim) || dim < -x.ndim || dim >= x.ndim) {
    throw new Error(`${op}: dim ${dim} is out of range for a ${x.ndim}-d tensor of shape ${fmt(x.shape)}`);
  }
  return dim < 0 ? dim + x.ndim : dim;
}

function fourByte(op: string, x: Tensor): void {
  if (storageBytes(x.dtype, 1) !== 4) throw new Error(`${op}: copies 4-byte elements (f32, i32), got an ${x.dtype} tensor`);
}

/** A tensor sharing t's buffer with another shape of the same size. */
function view(t: Tensor, shape: readonly number[]): Tensor {
  return new Tensor(t.storage.retain(), shape, t.dtype);
}

/** x viewed as (A, D, C) around dim `d`. */
function around(shape: readonly number[], d: number): { A: number; D: number; C: number } {
  return { A: numel(shape.slice(0, d)), D: shape[d]!, C: numel(shape.slice(d + 1)) };
}

/**
 * The same data with another shape: a view sharing x's buffer, no copy. One dim may be -1 (inferred).
 * d/dx = dy viewed with x's shape.
 */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const bad = () =>
    new Error(`reshape: shape ${fmt(shape)} is invalid for a tensor of shape ${fmt(x.shape)} (${x.size} elements)`);
  if (shape.some((d) => !Number.isInteger(d) || d < -1) || shape.filter((d) => d === -1).length > 1) throw bad();
  const known = numel(shape.filter((d) => d !== -1));
  let resolved = [...shape];
  if (shape.includes(-1)) {
    if (known === 0 || x.size % known !== 0) throw bad();
    resolved = shape.map((d) => (d === -1 ? x.size / known : d));
  } else if (known !== x.size) throw bad();
  return record(view(x, resolved), "reshape", [x], (dy) => [view(dy, x.shape)]);
}

/** Swaps dims dim0 and dim1 (a copy; the same dim twice gives a view). d/dx = the same transpose of dy. */
export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  fourByte("transpose", x);
  const a = normDim("transpose", x, dim0);
  const b = normDim("transpose", x, dim1);
  if (a === b) return reshape(x, x.shape);
  const [lo, hi] = a < b ? [a, b] : [b, a];
  // x: (A, d0, B, d1, C) -> y: (A, d1, B, d0, C)
  const s = x.shape;
  const d0 = s[lo]!;
  const d1 = s[hi]!;
  const B = numel(s.slice(lo + 1, hi));
  const C = numel(s.slice(hi + 1));
  const shape = [...s];
  [shape[lo], shape[hi]] = [d1, d0];
  const y = K.transpose(x, { d0, B, d1, C }, shape);
  return record(y, "transpose", [x], (dy) => [K.transpose(dy, { d0: d1, B, d1: d0, C }, s)]);
}

/**
 * x[..., start:end, ...] along `dim` (a copy). Negative start/end count from the end of the dim; `end`
 * defaults to its size; unlike Python slicing, out-of-range bounds throw. d/dx = dy placed in zeros.
 */
export function slice(x: Tensor, dim: number, start: number, end?: number): Tensor {
  fourByte("slice", x);
  const d = normDim("slice", x, dim);
  const { A, D, C } = around(x.shape, d);
  const s = start < 0 ? start + D : start;
  const e = end === undefined ? D : end < 0 ? end + D : end;
  if (!Number.isInteger(s) || !Number.isInteger(e) || s < 0 || s > e || e > D) {
    const range = `[${start}, ${end ?? D})`;
    throw new Error(`slice: ${range} is out of range for dim ${dim} of size ${D} (shape ${fmt(x.shape)})`);
  }
  const len = e - s;
  const shape = [...x.shape];
  shape[d] = len;
  const y = Tensor.empty(shape, x.dtype);
  K.copyBlock(x, y, { A, Din: D, Dout: len, d: len, srcOff: s, dstOff: 0, C });
  return record(y, "slice", [x], (dy) => {
    const dx = full(x.shape, 0);
    K.copyBlock(dy, dx, { A, Din: len, Dout: D, d: len, srcOff: 0, dstOff: s, C });
    return [dx];
  });
}

/** Joins tensors along `dim`; their shapes must agree elsewhere (a copy). d/dx_i = the slice of dy at x_i. */
export function concat(tensors: readonly Tensor[], dim: number): Tensor {
  const first = tensors[0];
  if (!first) throw new Error("concat: needs at least one tensor");
  if (first.ndim === 0) throw new Error("concat: 0-d tensors have no dim to join along");
  const d = normDim("concat", first, dim);
  for (const t of tensors) {
    fourByte("concat", t);
    if (t.dtype !== first.dtype) throw new Error(`concat: dtypes differ (${first.dtype} and ${t.dtype})`);
    if (t.ndim !== first.ndim || t.shape.some((n, i) => i !== d && n !== first.shape[i])) {
      throw new Error(`concat: shapes ${fmt(first.shape)} and ${fmt(t.shape)} differ outside dim ${dim}`);
    }
  }
  const { A, C } = around(first.shape, d);
  const Dout = tensors.reduce((n, t) => n + t.shape[d]!, 0);
  const shape = [...first.shape];
  shape[d] = Dout;
  const y = Tensor.empty(shape, first.dtype);
  const offsets: number[] = [];
  let off = 0;
  for (const t of tensors) {
    const len = t.shape[d]!;
    K.copyBlock(t, y, { A, Din: len, Dout, d: len, srcOff: 0, dstOff: off, C });
    offsets.push(off);
    off += len;
  }
  return record(y, "concat", [...tensors], (dy, needs) =>
    tensors.map((t, i) => {
      if (!needs[i]) return null;
      const dx = Tensor.empty(t.shape);
      const len = t.shape[d]!;
      K.copyBlock(dy, dx, { A, Din: Dout, Dout: len, d: len, srcOff: offsets[i]!, dstOff: 0, C });
      return dx;
    }),
  );
}
