// Matrix multiply with batching and transposed operands, and its gradient.
import { sumLeading } from "../kernels/elementwise.ts";
import { checkMatmulDtypes, matmulInto, type MatmulDims } from "../kernels/matmul.ts";
import { isPacked, isWeightFormat, untrainableReason, WEIGHT_FORMATS, type WeightFormat } from "../tensor/format.ts";
import { axpy, numel, record, Tensor } from "../tensor/tensor.ts";

export interface MatmulOptions {
  /** a is [..., K, M] and used transposed. */
  transpose_a?: boolean;
  /** b is [..., N, K] and used transposed (x·Wᵀ of a linear layer with W [out, in]). */
  transpose_b?: boolean;
}

/**
 * op(a)·op(b) over the last two dims: a [..., M, K] (or [..., K, M] with transpose_a) and b [..., K, N]
 * (or [..., N, K] with transpose_b) give [..., M, N]. The batch dims are equal, or one operand is 2-D and
 * shared by the other's batch (a weight).
 *
 * Gradients: see gradients().
 *
 * Either operand may be stored as f16 (a frozen weight, half the memory) on an adapter with shader-f16: it is
 * widened to f32 as the kernel loads it and all arithmetic stays f32. b may also be stored in a packed format
 * (bf16, GGUF q8_0 … q6_k, nf4, fp4, int8: format.ts / quant.ts), dequantized inside the kernel as it is
 * loaded (matmul_<format>b); its rows (the last dim) are whole blocks. A frozen-format operand cannot require
 * grad; the other operand's gradient reads it as stored (dx = dy·W runs on the same packed W).
 */
export function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  const ta = options.transpose_a ?? false;
  const tb = options.transpose_b ?? false;
  checkFrozen("matmul", [["a", a], ["b", b]]);
  const out = product(a, ta, b, tb, false);
  return record(out, "matmul", [a, b], (dy, needs) => gradients(a, ta, b, tb, dy, needs), saved(a, b));
}

/**
 * nn.Linear's forward (torch.nn.functional.linear): y = x·Wᵀ + b with x [..., in], weight [out, in], bias [out]
 * or null; the leading dims of x fold into the rows. The bias is added in place to the product (axpy, the one
 * bias add). Gradients: dx = dy·W, dW = dyᵀ·x (summed over the rows), db = Σ_rows dy. The weight may be stored
 * in a frozen format (f16, or a packed one: bf16, q4_0, q4_k, nf4, int8, …, a quantized base whose rows of `in`
 * elements are whole blocks), as for matmul: the variant is the weight's dtype (matmul_q4_0b), and dx reads the
 * packed weight too.
 */
export function linear(x: Tensor, weight: Tensor, bias: Tensor | null = null): Tensor {
  if (!bias) return matmul(x, weight, { transpose_b: true });
  const O = weight.shape[0]!;
  if (weight.ndim !== 2 || bias.ndim !== 1 || bias.shape[0] !== O || bias.dtype !== "f32") {
    throw new Error(`linear: weight [${weight.shape.join(", ")}] needs a 2-D weight [out, in] and an f32 bias [out], got bias [${bias.shape.join(", ")}] ${bias.dtype}`);
  }
  checkFrozen("linear", [["x", x], ["weight", weight]]);
  const y = product(x, false, weight, true, false);
  axpy(y, bias);
  return record(
    y,
    "linear",
    [x, weight, bias],
    (dy, needs) => [...gradients(x, false, weight, true, dy, needs), needs[2] ? sumLeading(dy, [O]) : null],
    saved(x, weight),
  );
}

/** The element formats ("f32 or f16") or the packed ones ("bf16, q8_0, …"), for errors. */
function formatList(packed: boolean): string {
  const list = (Object.keys(WEIGHT_FORMATS) as WeightFormat[]).filter((f) => isPacked(f) === packed);
  return list.join(packed ? ", " : " or ");
}

/** A tensor in a frozen weight format (f16) cannot require grad: say which operand. */
function checkFrozen(op: string, operands: readonly (readonly [string, Tensor])[]): void {
  for (const [name, t] of operands) {
    const why = t.requires_grad && isWeightFormat(t.dtype) ? untrainableReason(t.dtype, "operand") : null;
    if (why) throw new Error(`${op}: ${name} [${t.shape.join(", ")}]: ${why}`);
  }
}

/** Each gradient reads the other operand: keep only what a needed gradient will read. */
function saved(a: Tensor, b: Tensor): Tensor[] {
  return [...(b.requires_grad ? [a] : []), ...(a.requires_grad ? [b] : [])];
}

/**
 * [dA, dB] of C = A'B' (A' = op(a), B' = op(b)) for the inputs `needs` asks for: dA' = dC·B'ᵀ and dB' = A'ᵀ·dC,
 * each one product of the same kernel with the operands' transposes flipped; a shared operand's gradient is
 * summed over the batch inside that product.
 */
function gradients(a: Tensor, ta: boolean, b: Tensor, tb: boolean, dy: Tensor, needs: boolean[]): [Tensor | null, Tensor | null] {
  const sumA = a.ndim === 2 && dy.ndim > 2; // a was shared by the batch
  const sumB = b.ndim === 2 && dy.ndim > 2;
  // dA = dC·B'ᵀ, or (dC·B'ᵀ)ᵀ = B'·dCᵀ when a is stored transposed.
  const da = needs[0] ? (ta ? product(b, tb, dy, true, sumA) : product(dy, false, b, !tb, sumA)) : null;
  // dB = A'ᵀ·dC, or (A'ᵀ·dC)ᵀ = dCᵀ·A' when b is stored transposed.
  const db = needs[1] ? (tb ? product(dy, true, a, ta, sumB) : product(a, !ta, dy, false, sumB)) : null;
  return [da, db];
}

/**
 * op(a)·op(b) with batch dims equal or one operand 2-D; with `sumBatch`, the products of the batch are summed
 * into one [M, N] (the gradient of an operand that was shared by the batch).
 */
function product(a: Tensor, ta: boolean, b: Tensor, tb: boolean, sumBatch: boolean): Tensor {
  const fail = (why: string): never => {
    const operands = `a [${a.shape.join(", ")}] (transpose_a=${ta}) and b [${b.shape.join(", ")}] (transpose_b=${tb})`;
    throw new Error(`matmul: ${operands}: ${why}`);
  };
  if (a.ndim < 2 || b.ndim < 2) fail("both operands need at least 2 dims");
  if (!isWeightFormat(a.dtype) || !isWeightFormat(b.dtype)) {
    fail(`${formatList(false)} operands only, b also ${formatList(true)} (got ${a.dtype} and ${b.dtype})`);
  }
  checkMatmulDtypes(a.dtype, b.dtype); // f16 needs shader-f16: fail before allocating the output
  const [ra, ca] = a.shape.slice(-2) as [number, number];
  const [rb, cb] = b.shape.slice(-2) as [number, number];
  const [M, K] = ta ? [ca, ra] : [ra, ca];
  const [Kb, N] = tb ? [cb, rb] : [rb, cb];
  if (K !== Kb) fail(`inner dims differ (K=${K} from a, K=${Kb} from b)`);
  const batchA = a.shape.slice(0, -2);
  const batchB = b.shape.slice(0, -2);
  const shared = batchA.length === 0 || batchB.length === 0;
  if (!shared && batchA.join() !== batchB.join()) {
    fail(`batch dims [${batchA.join(", ")}] and [${batchB.join(", ")}] differ (must be equal, or one operand 2-D)`);
  }
  const batchShape = batchA.length ? batchA : batchB;
  const Z = numel(batchShape);
  const sizeA = M * K;
  const sizeB = K * N;
  const d: MatmulDims = {
    M, N, K, transA: ta, transB: tb, batch: Z, sum: 1,
    a_z: batchA.length ? sizeA : 0, b_z: batchB.length ? sizeB : 0, c_z: M * N, a_s: 0, b_s: 0,
  };
  if (sumBatch) {
    const out = Tensor.empty([M, N]);
    if (ta && !tb && !shared) {
      // K is the row dim of both stored operands: the batch folds into K ([Z·K, M] and [Z·K, N]).
      matmulInto(a, b, out, { ...d, K: Z * K, batch: 1, a_z: 0, b_z: 0 });
    } else {
      matmulInto(a, b, out, { ...d, batch: 1, sum: Z, a_s: d.a_z, b_s: d.b_z, a_z: 0, b_z: 0 });
    }
    return out;
  }
  const out = Tensor.empty([...batchShape, M, N]);
  if (batchB.length === 0 && !ta && Z > 1) {
    // b shared and a's rows contiguous across the batch: one [Z·M, K]·B' product.
    matmulInto(a, b, out, { ...d, M: Z * M, batch: 1, a_z: 0 });
  } else {
    matmulInto(a, b, out, d);
  }
  return out;
}
