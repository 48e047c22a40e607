// The LoRA linear layer as PEFT computes it (lora.Linear.forward), its gradient, and PEFT's default init.
import { gpu } from "../gpu/device.ts";
import { sumLeading } from "../kernels/elementwise.ts";
import * as K from "../kernels/lora.ts";
import { productInto } from "../kernels/matmul.ts";
import { BASE_FORMAT, isWeightFormat, unsupportedReason, untrainableReason, type WeightFormat } from "../tensor/format.ts";
import { axpy, full, numel, record, Tensor } from "../tensor/tensor.ts";

export interface LoraLinearOptions {
  /** lora_alpha / r (lora_alpha / sqrt(r) with use_rslora). */
  scaling: number;
  /** lora_dropout: the probability that an element of x is zeroed on the adapter path (default 0). */
  dropout?: number;
  /** The dropout stream, a u32: give each LoRA layer its own. Required while dropout applies. */
  seed?: number;
  /** The training step, a u32: the mask is a function of (seed, step, element), so a step replays exactly. */
  step?: number;
  /** Dropout applies only when training (default true, as for a torch module). */
  training?: boolean;
}

/**
 * result = base_layer(x) + lora_B(lora_A(dropout(x))) · scaling, with x [..., in], weight [out, in], bias [out]
 * or null, lora_A [r, in], lora_B [out, r]; the leading dims of x fold into T rows.
 *
 * h = dropout(x), u = h Aᵀ [T, r], y = x Wᵀ + b + s·u Bᵀ. Gradients (g = dy B [T, r]):
 *   dB = s·dyᵀ u [out, r]     dA = s·gᵀ h [r, in]     dx = dy W + s·(g A) ∘ keep / (1 - p)
 * and, only if they require grad, dW = dyᵀ x and db = Σ_rows dy: a frozen base layer costs no [out, in] buffer.
 * The scaling s rides on the products (matmul's alpha) and the adapter's terms accumulate into y and dx, so
 * no [T, out] or [T, in] temporary exists (with dropout, s·(g A) is one: the mask multiplies it first).
 * The dropout mask is never stored: backward regenerates it (and h) from (seed, step), so the saved state is
 * x (kept alive by its producer anyway, and shared by the q/k/v adapters that read it) and u [T, r].
 * The weight may be stored in a frozen weight format (f16, on an adapter with shader-f16; or packed: bf16,
 * GGUF q8_0 … q6_k, nf4, fp4, int8, dequantized inside the matmul kernel, QLoRA's base): both products that
 * read it (y and dx) widen it to f32 as they load it; everything else is f32.
 */
export function lora_linear(
  x: Tensor,
  weight: Tensor,
  bias: Tensor | null,
  lora_A: Tensor,
  lora_B: Tensor,
  options: LoraLinearOptions,
): Tensor {
  const { T, I, O, R } = dims(x, weight, bias, lora_A, lora_B);
  const s = options.scaling;
  if (!Number.isFinite(s)) throw new Error(`lora_linear: scaling must be a finite number, got ${s}`);
  const mask = dropoutMask(options);
  const y = product(x, false, weight, true, T, O, I, { shape: [...x.shape.slice(0, -1), O] });
  if (bias) axpy(y, bias);
  const h = mask ? K.dropout(x, mask) : x;
  const u = product(h, false, lora_A, true, T, R, I);
  if (mask) h.dispose();
  productInto(u, false, lora_B, true, y, T, O, R, { accumulate: true, alpha: s });

  const inputs = bias ? [x, weight, bias, lora_A, lora_B] : [x, weight, lora_A, lora_B];
  // Each gradient reads only some of these: keep what a needed one will read.
  const save = [
    ...(lora_A.requires_grad || weight.requires_grad ? [x] : []),
    ...(x.requires_grad ? [weight, lora_A] : []),
    ...(x.requires_grad || lora_A.requires_grad ? [lora_B] : []),
    ...(lora_B.requires_grad ? [u] : []),
  ];
  const out = record(
    y,
    "lora_linear",
    inputs,
    (dy, needs) => {
      const [needX, needW] = needs as [boolean, boolean];
      const needBias = bias ? needs[2]! : false;
      const [needA, needB] = needs.slice(-2) as [boolean, boolean];
      const dB = needB ? product(dy, true, u, false, O, R, T, { alpha: s }) : null;
      let dA: Tensor | null = null;
      let dx: Tensor | null = null;
      if (needA || needX) {
        const g = product(dy, false, lora_B, false, T, R, O);
        if (needA) {
          const h = mask ? K.dropout(x, mask) : x; // the forward's h, regenerated
          dA = product(g, true, h, false, R, I, T, { alpha: s });
          if (mask) h.dispose();
        }
        if (needX) {
          dx = product(dy, false, weight, false, T, I, O, { shape: x.shape });
          if (mask) {
            const dh = product(g, false, lora_A, false, T, I, R, { alpha: s });
            K.dropoutBackwardInto(dx, dh, mask);
            dh.dispose();
          } else productInto(g, false, lora_A, false, dx, T, I, R, { accumulate: true, alpha: s });
        }
        g.dispose();
      }
      const dW = needW ? product(dy, true, x, false, O, I, T) : null;
      const db = needBias ? sumLeading(dy, [O]) : null;
      return bias ? [dx, dW, db, dA, dB] : [dx, dW, dA, dB];
    },
    save,
  );
  u.dispose(); // the node holds its own reference when it recorded one
  return out;
}

/**
 * PEFT's default init (reset_lora_parameters with init_lora_weights=True): lora_A by
 * kaiming_uniform_(a=sqrt(5)), i.e. U(-bound, bound) with bound = gain·sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5)),
 * which is 1/sqrt(in_features); lora_B zeros, so the adapter starts as the identity. Seeded (a u32) from
 * Philox, not torch's generator: the values differ from PEFT's, the distribution is the same.
 */
export function initLoraWeights(in_features: number, out_features: number, r: number, seed: number): { A: Tensor; B: Tensor } {
  for (const [name, v] of [["in_features", in_features], ["out_features", out_features], ["r", r]] as const) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`initLoraWeights: ${name} must be a positive integer, got ${v}`);
  }
  checkU32("initLoraWeights", "seed", seed);
  const A = K.uniform([r, in_features], 1 / Math.sqrt(in_features), seed);
  const B = full([out_features, r], 0);
  A.requires_grad = true;
  B.requires_grad = true;
  return { A, B };
}

/** alpha · op(a) · op(b) = [M, N] (viewed as `shape`) from 2-D row-major operands; op transposes when flagged. */
function product(
  a: Tensor, ta: boolean, b: Tensor, tb: boolean, M: number, N: number, K: number,
  o: { alpha?: number; shape?: readonly number[] } = {},
): Tensor {
  const c = Tensor.empty(o.shape ?? [M, N]);
  productInto(a, ta, b, tb, c, M, N, K, { alpha: o.alpha });
  return c;
}

function dims(x: Tensor, weight: Tensor, bias: Tensor | null, A: Tensor, B: Tensor) {
  const shapes = () =>
    `x [${x.shape.join(", ")}], weight [${weight.shape.join(", ")}], bias ${bias ? `[${bias.shape.join(", ")}]` : "null"}, ` +
    `lora_A [${A.shape.join(", ")}], lora_B [${B.shape.join(", ")}]`;
  for (const [name, t] of [["x", x], ["weight", weight], ["bias", bias], ["lora_A", A], ["lora_B", B]] as const) {
    // The base weight may be stored in a frozen weight format (the products widen it as they load it).
    const ok = !t || (t === weight ? isWeightFormat(t.dtype) : t.dtype === BASE_FORMAT);
    if (!ok) throw new Error(`lora_linear: ${name} must be f32, got ${t.dtype}`);
  }
  const format = weight.dtype as WeightFormat;
  const frozen = weight.requires_grad ? untrainableReason(format, "weight") : null;
  if (frozen) throw new Error(`lora_linear: ${frozen}`);
  const unsupported = unsupportedReason(format, gpu().info);
  if (unsupported) throw new Error(`lora_linear: weight must be f32, got ${format}: ${unsupported}; keep the weight in f32 here`);
  if (x.ndim < 1 || weight.ndim !== 2 || A.ndim !== 2 || B.ndim !== 2 || (bias && bias.ndim !== 1)) {
    throw new Error(`lora_linear: need x [..., in], weight [out, in], bias [out], lora_A [r, in], lora_B [out, r]; got ${shapes()}`);
  }
  const [O, I] = weight.shape as [number, number];
  const R = A.shape[0]!;
  const ok = x.shape[x.ndim - 1] === I && A.shape[1] === I && B.shape[0] === O && B.shape[1] === R && (!bias || bias.shape[0] === O);
  if (!ok) throw new Error(`lora_linear: shapes do not fit x [..., in], weight [out, in], bias [out], lora_A [r, in], lora_B [out, r]: ${shapes()}`);
  return { T: numel(x.shape.slice(0, -1)), I, O, R };
}

function dropoutMask(o: LoraLinearOptions): K.DropoutMask | null {
  const p = o.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new Error(`lora_linear: dropout must be in [0, 1), got ${p}`);
  if (!(o.training ?? true) || p === 0) return null;
  if (o.seed === undefined || o.step === undefined) {
    throw new Error("lora_linear: dropout needs { seed, step } (the mask is a function of both, so a step can be replayed)");
  }
  checkU32("lora_linear", "seed", o.seed);
  checkU32("lora_linear", "step", o.step);
  return { p, seed: o.seed, step: o.step };
}

function checkU32(op: string, name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new Error(`${op}: ${name} must be an integer in [0, 2^32), got ${v}`);
}
