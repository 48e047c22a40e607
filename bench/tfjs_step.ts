// One full fine-tuning step of a tiny Llama-style decoder, written twice on the same GPUDevice, side by side:
// with @tensorflow/tfjs-core + @tensorflow/tfjs-backend-webgpu (embedding gather, RMSNorm, RoPE, causal
// softmax attention, SwiGLU MLP, tied LM head, cross-entropy; gradients from tf.variableGrads; tf.train.adam)
// and with webtune (tools/make-model.ts "llama" preset at the same sizes, model.requires_grad_(true), forward
// with labels, backward, AdamW with weight_decay 0). tfjs starts from webtune's weights (read back once), so
// the first step's losses should agree. Each step is timed to the queue's completion (no readback); one
// warm-up step each, then BENCH_STEPS (default 7, at least 5) interleaved steps, median reported.
// Runs under Deno (`deno run -A bench/tfjs_step.ts`: wgpu; llvmpipe without a GPU) and Node
// (`node --import tsx bench/tfjs_step.ts`: Dawn; SwiftShader without a GPU). Writes
// bench/results/tfjs-step-<host>-<adapter>-<date>.json. BENCH_TOKENS (default 128) sets the sequence length.
import { mkdirSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import * as tf from "@tensorflow/tfjs-core";
import { WebGPUBackend } from "@tensorflow/tfjs-backend-webgpu";
import { AdamW, AutoModelForCausalLM, deviceInfo, getDevice, memoryStats, sync, tidy, type DeviceInfo, type Tensor } from "../src/index.ts";
import { gpu } from "../src/gpu/device.ts";
import { makeModel } from "../tools/make-model.ts";
import { median } from "./util.ts";

const env = (k: string) => (globalThis as { Deno?: { env: { get(k: string): string | undefined } } }).Deno?.env.get(k) ?? globalThis.process?.env[k];
const T = Number(env("BENCH_TOKENS") ?? 128);
const STEPS = Math.max(5, Number(env("BENCH_STEPS") ?? 7));
const C = 64;
const LAYERS = 2;
const H = 4;
const D = C / H;
const F = 128;
const V = 320;
const EPS = 1e-6;
const THETA = 10000;
const LR = 1e-3;
const MiB = (b: number) => +(b / 2 ** 20).toFixed(2);

const device = await getDevice();
const info = deviceInfo();
const adapter = info.adapter.description || `${info.adapter.vendor} ${info.adapter.architecture}`.trim();
console.log(`tfjs vs webtune training step on ${info.host}, ${adapter}: hidden ${C}, ${LAYERS} layers, ${H} heads, MLP ${F}, vocab ${V}, ${T} tokens`);

// webtune's model: the tiny llama preset at these sizes (tied embeddings, RoPE θ 10000, RMSNorm eps 1e-6).
const dir = join(tmpdir(), `webtune-bench-tiny-llama-${C}x${LAYERS}-v${V}`);
await makeModel(dir, {
  arch: "llama",
  seed: 5,
  tokenizer: false,
  config: {
    hidden_size: C,
    intermediate_size: F,
    num_hidden_layers: LAYERS,
    num_attention_heads: H,
    num_key_value_heads: H,
    vocab_size: V,
    max_position_embeddings: Math.max(256, T),
    rms_norm_eps: EPS,
    rope_theta: THETA,
    tie_word_embeddings: true,
  },
});
const model = await AutoModelForCausalLM.from_pretrained(dir, { dtype: "float32" });
model.requires_grad_(true);
model.train();
const weights = await model.state_dict(); // before any step: tfjs starts from the same values
const opt = new AdamW(model.parameters(), { lr: LR, weight_decay: 0 });

// Random ids in [1, V) (0 is the pad id: its embedding row gets no gradient in transformers / webtune).
let seed = 11;
const ids = Array.from({ length: T }, () => 1 + ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) % (V - 1)));

// ---------------------------------------------------------------------------------------------------------
// tfjs on our device, with its gradients.
const backend = await tfjsOn(device, info);
await registerTfjsGradients();
const P = (name: string) => {
  const w = weights.get(name);
  if (!w) throw new Error(`tfjs_step: webtune's model has no ${name}`);
  return tf.variable(tf.tensor(w.data, w.shape), true, name);
};
const embed = P("model.embed_tokens.weight"); // [V, C], also the LM head
const layers = Array.from({ length: LAYERS }, (_, i) => {
  const p = `model.layers.${i}`;
  return {
    ln1: P(`${p}.input_layernorm.weight`),
    wq: P(`${p}.self_attn.q_proj.weight`),
    wk: P(`${p}.self_attn.k_proj.weight`),
    wv: P(`${p}.self_attn.v_proj.weight`),
    wo: P(`${p}.self_attn.o_proj.weight`),
    ln2: P(`${p}.post_attention_layernorm.weight`),
    wg: P(`${p}.mlp.gate_proj.weight`),
    wu: P(`${p}.mlp.up_proj.weight`),
    wd: P(`${p}.mlp.down_proj.weight`),
  };
});
const norm = P("model.norm.weight");
const vars = [embed, ...layers.flatMap((l) => Object.values(l)), norm];
const nParams = vars.reduce((s, v) => s + v.size, 0);

// Constants: ids, shifted targets, RoPE tables [T, 1, D] (transformers' cat(freqs, freqs)), causal mask.
const idsT = tf.tensor1d(ids, "int32");
const targetsOneHot = tf.oneHot(tf.tensor1d(ids.slice(1), "int32"), V); // [T-1, V]
const cosData = new Float32Array(T * D);
const sinData = new Float32Array(T * D);
for (let t = 0; t < T; t++) {
  for (let i = 0; i < D / 2; i++) {
    const a = t * Math.pow(THETA, -(2 * i) / D);
    cosData[t * D + i] = cosData[t * D + i + D / 2] = Math.cos(a);
    sinData[t * D + i] = sinData[t * D + i + D / 2] = Math.sin(a);
  }
}
const cos = tf.tensor3d(cosData, [T, 1, D]);
const sin = tf.tensor3d(sinData, [T, 1, D]);
const maskData = new Float32Array(T * T);
for (let i = 0; i < T; i++) for (let j = i + 1; j < T; j++) maskData[i * T + j] = -1e9;
const mask = tf.tensor2d(maskData, [T, T]);

const linear = (x: tf.Tensor2D, w: tf.Variable) => tf.matMul(x, w as tf.Tensor2D, false, true); // x · Wᵀ
const rms = (x: tf.Tensor2D, w: tf.Variable): tf.Tensor2D =>
  tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), EPS))), w);
const ropeOf = (x: tf.Tensor3D): tf.Tensor3D => {
  const [x1, x2] = tf.split(x, 2, -1);
  const rotated = tf.concat([tf.neg(x2!), x1!], -1);
  return tf.add(tf.mul(x, cos), tf.mul(rotated, sin));
};

/** The mean next-token cross-entropy of the T - 1 shifted labels. */
function tfLoss(): tf.Scalar {
  let x = tf.gather(embed, idsT) as tf.Tensor2D; // [T, C]
  for (const l of layers) {
    const h = rms(x, l.ln1);
    const q = tf.transpose(ropeOf(tf.reshape(linear(h, l.wq), [T, H, D])), [1, 0, 2]); // [H, T, D]
    const k = tf.transpose(ropeOf(tf.reshape(linear(h, l.wk), [T, H, D])), [1, 0, 2]);
    const v = tf.transpose(tf.reshape(linear(h, l.wv), [T, H, D]), [1, 0, 2]);
    const scores = tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(D)), mask); // [H, T, T]
    const a = tf.reshape(tf.transpose(tf.matMul(tf.softmax(scores), v), [1, 0, 2]), [T, C]);
    x = tf.add(x, linear(a as tf.Tensor2D, l.wo));
    const h2 = rms(x, l.ln2);
    const g = linear(h2, l.wg);
    x = tf.add(x, linear(tf.mul(tf.mul(g, tf.sigmoid(g)), linear(h2, l.wu)), l.wd));
  }
  const h = tf.slice(rms(x, norm), [0, 0], [T - 1, C]);
  const logits = tf.matMul(h, embed as tf.Tensor2D, false, true); // [T-1, V]
  return tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(logits), targetsOneHot), -1))) as tf.Scalar;
}

const adam = tf.train.adam(LR, 0.9, 0.999, 1e-8);

/** One tfjs step (forward, variableGrads, Adam), waited for; returns [ms, loss tensor]. */
async function tfjsStep(): Promise<[number, tf.Scalar]> {
  const t0 = performance.now();
  const { value, grads } = tf.variableGrads(tfLoss, vars);
  adam.applyGradients(grads as Parameters<typeof adam.applyGradients>[0]);
  tf.dispose(grads);
  await drain(backend, device);
  return [performance.now() - t0, value];
}

/** One webtune step (forward with labels, backward, AdamW), waited for; returns [ms, loss tensor]. */
async function webtuneStep(): Promise<[number, Tensor]> {
  const t0 = performance.now();
  const loss = tidy(() => {
    const out = model.forward({ input_ids: [ids], labels: [ids] });
    out.loss!.backward();
    return out.loss!;
  });
  opt.step();
  opt.zero_grad();
  await sync();
  return [performance.now() - t0, loss];
}

// Warm-up (pipeline compilation), which also reads back the first step's loss of each.
gpu().pool.resetPeak();
const [warmOurs, l0] = await webtuneStep();
const webtuneLoss = (await l0.toArray())[0]!;
l0.dispose();
const [warmTheirs, tl0] = await tfjsStep();
const tfjsLoss = (await tl0.data())[0]!;
tl0.dispose();
console.log(`first-step loss: webtune ${webtuneLoss.toFixed(5)}, tfjs ${tfjsLoss.toFixed(5)} (ln ${V} = ${Math.log(V).toFixed(5)})`);
console.log(`warm-up: webtune ${warmOurs.toFixed(1)} ms, tfjs ${warmTheirs.toFixed(1)} ms`);

// Interleaved, so that a slow spell of the host falls on both sides.
const ours: number[] = [];
const theirs: number[] = [];
for (let r = 0; r < STEPS; r++) {
  const [a, la] = await webtuneStep();
  la.dispose();
  const [b, lb] = await tfjsStep();
  lb.dispose();
  ours.push(a);
  theirs.push(b);
  console.log(`  step ${r + 1}: webtune ${a.toFixed(1)} ms, tfjs ${b.toFixed(1)} ms`);
}
const webtunePeak = memoryStats().peakBytes;
const tfMem = tf.memory() as tf.MemoryInfo & { numBytesInGPU?: number; numBytesInGPUAllocated?: number };
const side = (runs: number[]) => {
  const ms = median(runs);
  return { runs_ms: runs.map((t) => +t.toFixed(2)), median_ms: +ms.toFixed(2), tokens_per_s: +((T * 1000) / ms).toFixed(1) };
};
const result = {
  date: new Date().toISOString(),
  host: info.host,
  adapter,
  tfjs: tf.version_core,
  model: { hidden_size: C, num_hidden_layers: LAYERS, num_attention_heads: H, num_key_value_heads: H, intermediate_size: F, vocab_size: V, tie_word_embeddings: true, parameters: nParams },
  tokens: T,
  step: "full fine-tuning: forward, causal attention, RMSNorm, RoPE, SwiGLU, tied LM head cross-entropy, backward, Adam(W) lr 1e-3, weight decay 0",
  first_step_loss: { webtune: +webtuneLoss.toFixed(6), tfjs: +tfjsLoss.toFixed(6) },
  webtune: { ...side(ours), warmup_ms: +warmOurs.toFixed(1), peak_mib: MiB(webtunePeak) },
  tfjs_webgpu: { ...side(theirs), warmup_ms: +warmTheirs.toFixed(1), gpu_mib_after: tfMem.numBytesInGPU !== undefined ? MiB(tfMem.numBytesInGPU) : null },
  ratio: 0,
};
result.ratio = +(result.tfjs_webgpu.median_ms / result.webtune.median_ms).toFixed(2);
console.log(`median step: webtune ${result.webtune.median_ms} ms (${result.webtune.tokens_per_s} tokens/s), tfjs ${result.tfjs_webgpu.median_ms} ms (${result.tfjs_webgpu.tokens_per_s} tokens/s): webtune ${result.ratio}× tfjs`);

mkdirSync(new URL("./results/", import.meta.url), { recursive: true });
const slug = adapter.replace(/[^a-z0-9.]+/gi, "-").replace(/^-|-$/g, "").toLowerCase();
const name = `tfjs-step-${info.host}-${slug}-${new Date().toISOString().slice(0, 10)}.json`;
writeFileSync(new URL(`./results/${name}`, import.meta.url), JSON.stringify(result, null, 2) + "\n");
console.log(`wrote bench/results/${name}`);
model.dispose();
globalThis.process?.exit?.(0);

// ---------------------------------------------------------------------------------------------------------
// As bench/matmul.ts: tfjs's WebGPU backend on webtune's device, and waiting for its queue.

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

/**
 * Registers tfjs's gradient functions, which tfjs-core's main bundle leaves out (the @tensorflow/tfjs bundle
 * imports @tensorflow/tfjs-core/dist/register_all_gradients, an ES module with extensionless imports that
 * neither Deno nor Node resolve). esbuild bundles it into the temp dir; its copy of the ops shares tfjs's
 * engine, Tensor class and registries, which tfjs keeps in globals for exactly such duplicates.
 */
async function registerTfjsGradients(): Promise<void> {
  const core = dirname(createRequire(import.meta.url).resolve("@tensorflow/tfjs-core/package.json"));
  const outfile = join(tmpdir(), "webtune-bench-tfjs-gradients.mjs");
  const { build } = await import("esbuild");
  await build({ entryPoints: [join(core, "dist/register_all_gradients.js")], bundle: true, format: "esm", platform: "node", outfile, logLevel: "error" });
  await import(pathToFileURL(outfile).href);
  if (!tf.getGradient("Neg")) throw new Error("tfjs: the gradients did not register");
}

/** Submits tfjs's recorded commands and waits for the queue (tfjs batches dispatches until a readback). */
async function drain(b: WebGPUBackend, dev: GPUDevice): Promise<void> {
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.submitQueue();
  await dev.queue.onSubmittedWorkDone();
}
