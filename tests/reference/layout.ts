// float64 references for shape ops, by multi-indices over row-major shapes (independent of the kernels'
// (A, D, C) views): forward and the analytic gradient of sum(f(x) · dy).

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Row-major strides of a shape. */
function strides(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  for (let i = shape.length - 1, acc = 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i]!;
  }
  return s;
}

/** Calls f(multi-index, flat index) for every element of `shape`, in row-major order. */
function each(shape: readonly number[], f: (idx: number[], flat: number) => void): void {
  const idx = new Array<number>(shape.length).fill(0);
  for (let flat = 0; flat < numel(shape); flat++) {
    f(idx, flat);
    for (let k = shape.length - 1; k >= 0; k--) {
      if (++idx[k]! < shape[k]!) break;
      idx[k] = 0;
    }
  }
}

const at = (st: number[], idx: number[]) => idx.reduce((o, v, k) => o + v * st[k]!, 0);

/** x (shape) with dims d0 and d1 swapped. */
export function transpose(x: Float64Array, shape: readonly number[], d0: number, d1: number): Float64Array {
  const outShape = [...shape];
  [outShape[d0], outShape[d1]] = [shape[d1]!, shape[d0]!];
  const st = strides(shape);
  const out = new Float64Array(x.length);
  each(outShape, (idx, flat) => {
    const src = [...idx];
    [src[d0], src[d1]] = [idx[d1]!, idx[d0]!];
    out[flat] = x[at(st, src)]!;
  });
  return out;
}

/** x[..., start:end, ...] along dim. */
export function slice(
  x: Float64Array,
  shape: readonly number[],
  dim: number,
  start: number,
  end: number,
): Float64Array {
  const outShape = [...shape];
  outShape[dim] = end - start;
  const st = strides(shape);
  const out = new Float64Array(numel(outShape));
  each(outShape, (idx, flat) => {
    const src = [...idx];
    src[dim]! += start;
    out[flat] = x[at(st, src)]!;
  });
  return out;
}

/** The gradient of slice: dy (the sliced shape) placed at [start, end) of zeros of `shape`. */
export function sliceGrad(
  dy: Float64Array,
  shape: readonly number[],
  dim: number,
  start: number,
  end: number,
): Float64Array {
  const dyShape = [...shape];
  dyShape[dim] = end - start;
  const st = strides(shape);
  const dx = new Float64Array(numel(shape));
  each(dyShape, (idx, flat) => {
    const dst = [...idx];
    dst[dim]! += start;
    dx[at(st, dst)] = dy[flat]!;
  });
  return dx;
}

/** xs (shapes) joined along dim. */
export function concat(xs: Float64Array[], shapes: readonly number[][], dim: number): Float64Array {
  const outShape = [...shapes[0]!];
  outShape[dim] = shapes.reduce((n, s) => n + s[dim]!, 0);
  const out = new Float64Array(numel(outShape));
  const st = strides(outShape);
  let off = 0;
  xs.forEach((x, i) => {
    each(shapes[i]!, (idx, flat) => {
      const dst = [...idx];
      dst[dim]! += off;
      out[at(st, dst)] = x[flat]!;
    });
    off += shapes[i]![dim]!;
  });
  return out;
}

/** The gradient of concat: the slice of dy at each input. */
export function concatGrad(dy: Float64Array, shapes: readonly number[][], dim: number): Float64Array[] {
  const outShape = [...shapes[0]!];
  outShape[dim] = shapes.reduce((n, s) => n + s[dim]!, 0);
  let off = 0;
  return shapes.map((s) => {
    const g = slice(dy, outShape, dim, off, off + s[dim]!);
    off += s[dim]!;
    return g;
  });
}
