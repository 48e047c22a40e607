// The LM head's loss, forward + backward: the fused, chunked fused_linear_cross_entropy beside the same
// computation composed from plain ops (full [T × V] logits by matmul, logsumexp and softmax from
// src/ops/reduce.ts, the label's logit picked by a one-hot product, autograd backward), in one run on the
// same data. SmolLM2-135M's head: hidden 576, vocab 49,152, at T = 512 tokens.
//
// One run = enqueue forward and backward, then wait until the queue has finished (no readback); the
// median of the timed runs after a warm-up run. Peak bytes: the pool's peak during one run above what was live
// before it (inputs, and the composed side's one-hot labels, are not counted).
import { deviceInfo, getDevice, logsumexp, matmul, mul, no_grad, scale, softmax, sub, sum, sync, tidy, Tensor, tuneMatmul } from "../src/index.ts";
import { gpu } from "../src/gpu/device.ts";
import { defaultChunkSize, fused_linear_cross_entropy } from "../src/ops/cross_entropy.ts";
import { maxRelDiff, median, random } from "./util.ts";

export interface Row {
  name: string;
  adapter: string;
  /** Tokens, hidden size, vocabulary. */
  T: number;
  C: number;
  V: number;
  /** Tokens per chunk of the fused op; null for the composed one (all T at once). */
  chunk_size: number | null;
  runs_ms: number[];
  median_ms: number;
  peak_bytes: number;
  /** The loss of the warm-up run (both sides should agree). */
  loss: number;
  /** Largest |dhidden - the fused side's| over the largest |dhidden| (0 for the fused row). */
  dhidden_max_rel_diff: number;
}

// SmolLM2-135M's LM head at 512 tokens on every adapter. Timed runs: up to MAX_RUNS, fewer where one
// takes more than BUDGET_MS / MAX_RUNS (a CPU adapter: 1 or 2 runs of 30-60 s each), at least one.
const MAX_RUNS = 3;
const BUDGET_MS = 120_000;
const T = 512;
const C = 576;
const V = 49152;

export async function benchCrossEntropy(): Promise<Row[]> {
  await getDevice();
  const info = deviceInfo();
  const adapter = info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim();
  await tuneMatmul();

  // Inputs like a trained head's: logits of a few units; one token in 8 ignored (-100).
  const h = Tensor.fromArray(random(T * C, 1, 1), [T, C], { requires_grad: true });
  const w = Tensor.fromArray(random(V * C, 2, 0.1), [V, C], { requires_grad: true });
  const labels = Int32Array.from({ length: T }, (_, t) => (t % 8 === 7 ? -100 : (t * 7919) % V));
  const valid = labels.filter((y) => y !== -100).length;
  const onehotData = new Float32Array(T * V);
  labels.forEach((y, t) => y >= 0 && (onehotData[t * V + y] = 1));
  const onehot = Tensor.fromArray(onehotData, [T, V]);
  const mask = Tensor.fromArray(Float32Array.from(labels, (y) => (y === -100 ? 0 : 1)), [T]);

  const fused = (): Tensor => {
    const out = fused_linear_cross_entropy(h, w, labels);
    out.loss.backward();
    out.metrics.correct.dispose();
    out.metrics.entropy_sum.dispose();
    return out.loss;
  };
  // Loss, entropy sum and gradients as plain ops; accuracy is left out (no comparison op to build it from).
  const composed = (): Tensor =>
    tidy(() => {
      const logits = matmul(h, w, { transpose_b: true }); // [T, V]
      const lse = logsumexp(logits); // [T]
      const picked = sum(mul(logits, onehot)); // [T]: the label's logit, 0 for ignored tokens
      const loss = scale(sum(mul(sub(lse, picked), mask)), 1 / valid);
      // H = lse - Σ_v p_v z_v
      no_grad(() => sum(mul(sub(lse, sum(mul(softmax(logits), logits))), mask)));
      loss.backward();
      return loss;
    });

  const sides: { name: string; chunk_size: number | null; run: () => Tensor }[] = [
    { name: "fused_linear_cross_entropy", chunk_size: Math.min(T, defaultChunkSize(V)), run: fused },
    { name: "composed: matmul + logsumexp + one-hot", chunk_size: null, run: composed },
  ];
  // Warm-up: compiles the pipelines, fills the pool, and keeps each side's loss and dhidden to compare.
  const warm: { loss: number; diff: number }[] = [];
  let reference: Float32Array | null = null;
  let slowest = 0;
  for (const side of sides) {
    const t0 = performance.now();
    const l = side.run();
    const loss = await l.item();
    slowest = Math.max(slowest, performance.now() - t0);
    l.dispose();
    const dh = (await h.grad!.toArray()) as Float32Array;
    reference ??= dh;
    warm.push({ loss, diff: maxRelDiff(dh, reference) });
    h.zero_grad();
    w.zero_grad();
  }
  // Interleaved, so that a slow spell of the host falls on both sides.
  const runs = sides.map(() => ({ runs_ms: [] as number[], peak_bytes: 0 }));
  const runCount = Math.max(1, Math.min(MAX_RUNS, Math.floor(BUDGET_MS / (2 * slowest))));
  for (let r = 0; r < runCount; r++) {
    for (const [i, side] of sides.entries()) {
      await sync();
      const live = gpu().pool.memoryStats().liveBytes;
      gpu().pool.resetPeak();
      const t0 = performance.now();
      const l = side.run();
      await sync();
      runs[i]!.runs_ms.push(+(performance.now() - t0).toFixed(1));
      runs[i]!.peak_bytes = Math.max(runs[i]!.peak_bytes, gpu().pool.memoryStats().peakBytes - live);
      l.dispose();
      h.zero_grad();
      w.zero_grad();
    }
  }
  const rows: Row[] = sides.map((side, i) => ({
    name: side.name,
    adapter,
    T,
    C,
    V,
    chunk_size: side.chunk_size,
    runs_ms: runs[i]!.runs_ms,
    median_ms: median(runs[i]!.runs_ms),
    peak_bytes: runs[i]!.peak_bytes,
    loss: warm[i]!.loss,
    dhidden_max_rel_diff: warm[i]!.diff,
  }));
  for (const t of [h, w, onehot, mask]) t.dispose();
  return rows;
}

/** Prints the rows as a table. */
export function printCrossEntropy(rows: Row[]): void {
  const r0 = rows[0]!;
  console.log(`LM-head loss forward + backward, T=${r0.T} C=${r0.C} V=${r0.V}, adapter ${r0.adapter}`);
  const header = `${"".padEnd(40)} ${"chunk".padStart(6)} ${"median ms".padStart(10)} ${"peak MiB".padStart(9)} ${"loss".padStart(9)}  dh diff  runs ms`;
  console.log(header);
  console.log("-".repeat(header.length + 12));
  for (const r of rows) {
    console.log(
      `${r.name.padEnd(40)} ${String(r.chunk_size ?? "all").padStart(6)} ${r.median_ms.toFixed(0).padStart(10)} ` +
        `${(r.peak_bytes / 2 ** 20).toFixed(1).padStart(9)} ${r.loss.toFixed(5).padStart(9)}  ${r.dhidden_max_rel_diff.toExponential(1).padStart(7)}  ${r.runs_ms.join(", ")}`,
    );
  }
}
