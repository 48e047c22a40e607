// Matmul throughput of webtune beside @tensorflow/tfjs-backend-webgpu on the same GPUDevice, in one run.
// Runs under Node (`node --import tsx bench/matmul.ts`: Dawn, SwiftShader without a GPU) and Deno
// (`deno run -A bench/matmul.ts`: wgpu, llvmpipe without a GPU). Prints a table and writes it as JSON to
// bench/results/<host>-<adapter>-<date>.json.
//
// One run = enqueue the product, then wait until the queue has finished it (no readback), for both
// libraries; the median of at least 5 runs after a warm-up run that compiles the pipelines.
import { mkdirSync, writeFileSync } from "node:fs";
import * as tf from "@tensorflow/tfjs-core";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { deviceInfo, getDevice, matmul, sync, Tensor, tuneMatmul, type DeviceInfo } from "../src/index.ts";
import { configName } from "../src/kernels/matmul.ts";
import { maxRelDiff, median, random } from "./util.ts";

interface Shape {
  name: string;
  M: number;
  K: number;
  N: number;
  /** b is stored [N, K] (a linear layer's weight [out, in]). */
  transposeB: boolean;
}

// Squares, then SmolLM2-135M's linear layers at 512 tokens (hidden 576, MLP 1536, vocab 49152): x·Wᵀ; then
// the same weights at one token (decoding: M = 1, the matrix-vector kernels).
const SHAPES: Shape[] = [
  { name: "256³", M: 256, K: 256, N: 256, transposeB: false },
  { name: "512³", M: 512, K: 512, N: 512, transposeB: false },
  { name: "1024³", M: 1024, K: 1024, N: 1024, transposeB: false },
  { name: "q/o proj [512×576]·[576×576]ᵀ", M: 512, K: 576, N: 576, transposeB: true },
  { name: "gate/up [512×576]·[1536×576]ᵀ", M: 512, K: 576, N: 1536, transposeB: true },
  { name: "down [512×1536]·[576×1536]ᵀ", M: 512, K: 1536, N: 576, transposeB: true },
  { name: "LM head [512×576]·[49152×576]ᵀ", M: 512, K: 576, N: 49152, transposeB: true },
  { name: "decode up [1×576]·[1536×576]ᵀ", M: 1, K: 576, N: 1536, transposeB: true },
  { name: "decode down [1×1536]·[576×1536]ᵀ", M: 1, K: 1536, N: 576, transposeB: true },
  { name: "decode LM head [1×576]·[49152×576]ᵀ", M: 1, K: 576, N: 49152, transposeB: true },
];

const MIN_RUNS = 5;
const MAX_RUNS = 15;
/** Runs per side: about this long each (judged from the warm-up), within [MIN_RUNS, MAX_RUNS]. */
const TARGET_MS = 3000;

interface Side {
  runs_ms: number[];
  median_ms: number;
  gflops: number;
}

export interface Row extends Shape {
  webtune: Side;
  tfjs: Side;
  /** webtune GFLOP/s over tfjs GFLOP/s. */
  ratio: number;
  /** Largest |webtune - tfjs| over the output, relative to the largest |output|. */
  max_rel_diff: number;
}

/** Benchmarks every shape and writes the results; returns the rows. */
export async function benchMatmul(): Promise<Row[]> {
  const device = await getDevice();
  const info = deviceInfo();
  const adapter = info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim();
  const fallback = info.adapter.isFallbackAdapter ? " (fallback)" : "";
  console.log(`webtune matmul benchmark: host ${info.host}, adapter ${adapter}${fallback}`);

  const tuning = await tuneMatmul();
  const tried = tuning.timings.map((t) => `${configName(t.config)}: ${t.gflops.toFixed(2)}`).join("; ");
  console.log(`autotune (${tuning.ms.toFixed(0)} ms) GFLOP/s: ${tried}`);
  console.log(`chosen: ${configName(tuning.config)}\n`);

  const backend = await tfjsOn(device, info);
  const rows: Row[] = [];
  const cols = (name: string, ours: string, theirs: string, ratio: string, runs: string) =>
    `${name.padEnd(34)} ${ours.padStart(16)} ${theirs.padStart(13)} ${ratio.padStart(7)}  ${runs}`;
  const header = cols("product", "webtune GFLOP/s", "tfjs GFLOP/s", "ratio", "runs");
  console.log(header);
  console.log("-".repeat(header.length));
  for (const shape of SHAPES) {
    const row = await measure(shape, backend, device);
    rows.push(row);
    const differ = row.max_rel_diff > 1e-4 ? `  (outputs differ: ${row.max_rel_diff.toExponential(1)})` : "";
    const [ours, theirs] = [row.webtune.gflops.toFixed(2), row.tfjs.gflops.toFixed(2)];
    console.log(cols(shape.name, ours, theirs, `${row.ratio.toFixed(1)}×`, `${row.webtune.runs_ms.length}`) + differ);
  }

  const date = new Date().toISOString().slice(0, 10);
  const slug = (s: string) => s.toLowerCase().replace(/[^a-z0-9.]+/g, "-").replace(/^-|-$/g, "");
  const file = new URL(`./results/${info.host}-${slug(adapter)}-${date}.json`, import.meta.url);
  mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
  const record = {
    date: new Date().toISOString(),
    host: info.host,
    adapter: info.adapter,
    tfjs: tf.version_core,
    tuning: {
      ms: Math.round(tuning.ms),
      chosen: configName(tuning.config),
      candidates: tuning.timings.map((t) => ({ config: configName(t.config), gflops: +t.gflops.toFixed(3) })),
    },
    rows,
  };
  writeFileSync(file, JSON.stringify(record, null, 2) + "\n");
  console.log(`\nwrote ${file.pathname}`);
  return rows;
}

async function measure(shape: Shape, backend: WebGPUBackend, device: GPUDevice): Promise<Row> {
  const { M, K, N, transposeB } = shape;
  const x = random(M * K, 1);
  const w = random(K * N, 2);
  const shapeW = transposeB ? [N, K] : [K, N];
  const a = Tensor.fromArray(x, [M, K]);
  const b = Tensor.fromArray(w, shapeW);
  const ta = tf.tensor2d(x, [M, K]);
  const tb = tf.tensor2d(w, shapeW as [number, number]);
  const ours = async () => {
    const t0 = performance.now();
    const c = matmul(a, b, { transpose_b: transposeB });
    await sync();
    const ms = performance.now() - t0;
    c.dispose();
    return ms;
  };
  const theirs = async () => {
    const t0 = performance.now();
    const c = tf.matMul(ta, tb, false, transposeB);
    await drain(backend, device);
    const ms = performance.now() - t0;
    c.dispose();
    return ms;
  };
  // Warm-up (pipeline compilation, tfjs's upload), which also compares the outputs once and sizes the runs.
  const t0 = performance.now();
  const mine = matmul(a, b, { transpose_b: transposeB });
  const ref = tf.matMul(ta, tb, false, transposeB);
  const diff = maxRelDiff(await mine.toArray(), await ref.data());
  mine.dispose();
  ref.dispose();
  const runs = Math.min(MAX_RUNS, Math.max(MIN_RUNS, Math.ceil((2 * TARGET_MS) / (performance.now() - t0))));
  // Interleaved, so that a slow spell of the host falls on both sides.
  const mineMs: number[] = [];
  const theirMs: number[] = [];
  for (let r = 0; r < runs; r++) {
    mineMs.push(await ours());
    theirMs.push(await theirs());
  }
  a.dispose();
  b.dispose();
  ta.dispose();
  tb.dispose();
  const flops = 2 * M * N * K;
  const side = (runs_ms: number[]): Side => {
    const median_ms = median(runs_ms);
    const gflops = flops / median_ms / 1e6;
    return { runs_ms: runs_ms.map((t) => +t.toFixed(2)), median_ms: +median_ms.toFixed(2), gflops: +gflops.toFixed(3) };
  };
  const webtune = side(mineMs);
  const tfjs = side(theirMs);
  return { ...shape, webtune, tfjs, ratio: +(webtune.gflops / tfjs.gflops).toFixed(2), max_rel_diff: diff };
}

/** tfjs's WebGPU backend on our device, registered as "webgpu" (its kernels are registered under that name). */
async function tfjsOn(dev: GPUDevice, info: DeviceInfo): Promise<WebGPUBackend> {
  // The backend refuses to start without navigator.gpu, which Node does not have (Dawn's GPU is ours).
  const nav = (globalThis as { navigator?: { gpu?: unknown } }).navigator;
  if (!nav?.gpu) Object.defineProperty(globalThis, "navigator", { value: { ...nav, gpu: {} }, configurable: true });
  const adapterInfo = { vendor: info.adapter.vendor, architecture: info.adapter.architecture } as GPUAdapterInfo;
  const b = new WebGPUBackend(dev, adapterInfo);
  if (tf.findBackendFactory("webgpu")) tf.removeBackend("webgpu");
  tf.registerBackend("webgpu", () => b);
  if (!(await tf.setBackend("webgpu"))) throw new Error("tfjs: could not start the webgpu backend on our device");
  return b;
}

/** Submits tfjs's recorded commands and waits for the queue (tfjs batches dispatches until a readback). */
async function drain(b: WebGPUBackend, dev: GPUDevice): Promise<void> {
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.submitQueue();
  await dev.queue.onSubmittedWorkDone();
}

// Run directly (Deno: `deno run -A bench/matmul.ts`); bench/run.ts calls benchMatmul() under Node.
if ((import.meta as { main?: boolean }).main) {
  await benchMatmul();
  // The device keeps the event loop alive.
  (globalThis as unknown as { process: { exit(code: number): never } }).process.exit(0);
}
