// Causal attention forward + backward: the flash kernels (src/ops/attention.ts) beside the same computation
// composed from plain ops (per kv head: q·kᵀ → scale → + a precomputed -inf upper triangle → softmax → ·v,
// backward through autograd), in one run on one device. SmolLM2-135M's attention shape: H 9, KVH 3, D 64,
// one causal sequence of T tokens (B 1).
//
// One run = forward, backward from a fixed dy, then wait until the queue has finished (no readback). Each
// kind runs once untimed at T 512 to compile its pipelines (T does not change them). Timed runs: 3, fewer
// where one takes more than a third of BUDGET_MS (the row reports the median and the count): on
// SwiftShader with 2 cores the composed T 2048 row gets 1 run of 30 to 60 s, and the bench about 2.5 min.
// peakBytes: the pool's peak during a run (memoryStats().peakBytes after resetPeak()), inputs and gradients
// included. GFLOP/s counts the causal products only, for both: 2·D FLOPs per (query, key, head) pair for
// each of q·kᵀ and p·v forward and of dp, dv, dq, dk backward, 12·D·H·T(T+1)/2 per run.
import { gpu } from "../src/gpu/device.ts";
import {
  add, attention, concat, deviceInfo, getDevice, matmul, memoryStats, reshape, scale, slice, softmax, sync, Tensor, tidy, transpose,
} from "../src/index.ts";
import { median, random } from "./util.ts";

export interface Row {
  name: "flash" | "composed";
  T: number;
  /** Median wall time of one forward + backward. */
  ms: number;
  runs: number;
  gflops: number;
  /** Pool peak during one run. */
  peakBytes: number;
  /** Largest |o - o_flash| over the output (0 for the flash row). */
  maxDiff: number;
}

const H = 9;
const KVH = 3;
const D = 64;
const BUDGET_MS = 60_000;
const MAX_RUNS = 3;

/** softmax(q·kᵀ/sqrt(D) + mask)·v per kv head's group of query heads, from plain ops; mask [T, T]. */
function composed(q: Tensor, k: Tensor, v: Tensor, mask: Tensor): Tensor {
  return tidy(() => {
    const T = q.shape[1]!;
    const group = H / KVH;
    const qh = transpose(reshape(q, [T, H, D]), 0, 1); // [H, T, D]
    const outs: Tensor[] = [];
    for (let g = 0; g < KVH; g++) {
      const qg = slice(qh, 0, g * group, (g + 1) * group); // [group, T, D]
      const kg = reshape(slice(reshape(k, [T, KVH, D]), 1, g, g + 1), [T, D]);
      const vg = reshape(slice(reshape(v, [T, KVH, D]), 1, g, g + 1), [T, D]);
      const s = scale(matmul(qg, kg, { transpose_b: true }), 1 / Math.sqrt(D)); // [group, T, T]
      outs.push(matmul(softmax(add(s, mask)), vg)); // [group, T, D]
    }
    return reshape(transpose(concat(outs, 0), 0, 1), [1, T, H, D]);
  });
}

function randomTensor(shape: number[], seed: number, requires_grad = false): Tensor {
  return Tensor.fromArray(random(shape.reduce((a, b) => a * b, 1), seed, 1), shape, { requires_grad });
}

/** Times forward + backward of one kind at T; returns the times, the peak and o of the last run. */
async function measure(name: Row["name"], T: number, warmUp: boolean) {
  const q = randomTensor([1, T, H, D], 1, true);
  const k = randomTensor([1, T, KVH, D], 2, true);
  const v = randomTensor([1, T, KVH, D], 3, true);
  const dy = randomTensor([1, T, H, D], 4);
  let mask: Tensor | null = null;
  if (name === "composed") {
    const causal = new Float32Array(T * T);
    for (let i = 0; i < T; i++) causal.fill(-Infinity, i * T + i + 1, (i + 1) * T);
    mask = Tensor.fromArray(causal, [T, T]);
  }
  const once = () => {
    const o = mask ? composed(q, k, v, mask) : attention(q, k, v);
    o.backward(dy);
    for (const t of [q, k, v]) t.zero_grad();
    return o;
  };
  if (warmUp) {
    once().dispose();
    await sync();
  }
  const ms: number[] = [];
  let peakBytes = 0;
  let o: Float32Array = new Float32Array();
  const timed = async () => {
    gpu().pool.resetPeak();
    const t0 = performance.now();
    const out = once();
    await sync();
    ms.push(performance.now() - t0);
    peakBytes = Math.max(peakBytes, memoryStats().peakBytes);
    o = (await out.toArray()) as Float32Array;
    out.dispose();
  };
  await timed();
  const runs = Math.min(MAX_RUNS, Math.max(1, Math.floor(BUDGET_MS / ms[0]!)));
  while (ms.length < runs) await timed();
  for (const t of [q, k, v, dy, mask]) t?.dispose();
  return { ms, peakBytes, o };
}


/** Benchmarks flash and composed attention at T 512 and 2048; prints a table and returns the rows. */
export async function benchAttention(): Promise<Row[]> {
  await getDevice();
  const info = deviceInfo();
  const adapter = info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim();
  console.log(`webtune attention benchmark (H ${H}, KVH ${KVH}, D ${D}, B 1, causal): host ${info.host}, adapter ${adapter}`);
  const header = `${"kernel".padEnd(10)} ${"T".padStart(5)} ${"ms".padStart(9)} ${"GFLOP/s".padStart(8)} ${"peak MiB".padStart(9)} ${"runs".padStart(5)}  max |Δo|`;
  console.log(header);
  console.log("-".repeat(header.length));
  const rows: Row[] = [];
  for (const T of [512, 2048]) {
    const flops = 12 * D * H * ((T * (T + 1)) / 2);
    let reference: Float32Array | null = null;
    for (const name of ["flash", "composed"] as const) {
      const m = await measure(name, T, T === 512);
      reference ??= m.o;
      let maxDiff = 0;
      for (let i = 0; i < m.o.length; i++) maxDiff = Math.max(maxDiff, Math.abs(m.o[i]! - reference[i]!));
      const ms = median(m.ms);
      const row: Row = { name, T, ms, runs: m.ms.length, gflops: flops / (ms * 1e6), peakBytes: m.peakBytes, maxDiff };
      rows.push(row);
      console.log(
        `${name.padEnd(10)} ${String(T).padStart(5)} ${ms.toFixed(1).padStart(9)} ${row.gflops.toFixed(2).padStart(8)} ` +
          `${(row.peakBytes / 2 ** 20).toFixed(1).padStart(9)} ${String(row.runs).padStart(5)}  ${maxDiff.toExponential(1)}`,
      );
    }
  }
  return rows;
}
