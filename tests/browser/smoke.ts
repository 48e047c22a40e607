// Runs in headless Chromium (bundled by browser.test.ts): the device, a matmul, and one backward, checked
// against float64 references. Results go to window.__webtune for the Node side to assert on.
import {
  add, AutoModelForCausalLM, AutoTokenizer, deviceInfo, exp, getDevice, matmul, mul, PeftModel, sum, Tensor, tidy,
} from "../../src/index.ts";
import * as R from "../reference/matmul.ts";
import { expectAllClose, rand } from "../compare.ts";
import { check, type Result } from "./page-check.ts";



/** What the model mode measured, for the Node side to compare with the PyTorch fixture. */
interface ModelReport {
  loss?: number;
  tokens?: number[];
  encoded?: number[];
  progress_files?: string[];
}

/**
 * A tiny model, its adapter and its tokenizer as a user's page loads them: the model and adapter from a URL
 * (the test server; read through the Cache API), the tokenizer from File objects (as from an <input type=file>).
 */
async function modelMode(results: Result[], report: ModelReport): Promise<void> {
  const c = (await (await fetch("/case.json")).json()) as {
    padded: { input_ids: number[][]; attention_mask: number[][]; labels: number[][] };
    generate: { prompt: number[]; max_new_tokens: number };
    text: string;
  };
  await getDevice();
  const base = `${location.origin}/model`;
  await check("from_pretrained(URL) + PeftModel.from_pretrained(URL): loss, backward, generate", async () => {
    const files = new Set<string>();
    const model = await AutoModelForCausalLM.from_pretrained(base, { progress_callback: (p) => files.add(p.file) });
    report.progress_files = [...files].sort();
    const peft = await PeftModel.from_pretrained(model, `${base}/adapter`, { is_trainable: true });
    const out = tidy(() => peft.forward({ ...c.padded }));
    report.loss = await out.loss!.item();
    tidy(() => out.loss!.backward());
    if (!peft.parameters().every((p) => p.grad)) throw new Error("a LoRA parameter has no gradient");
    const tokens = await peft.generate(c.generate.prompt, { max_new_tokens: c.generate.max_new_tokens, eos_token_id: null });
    report.tokens = tokens[0]!.slice(c.generate.prompt.length);
    model.dispose();
  }, results);
  await check("a second from_pretrained(URL) is served by the Cache API", async () => {
    const before = (await (await fetch("/requests")).json()) as number;
    const model = await AutoModelForCausalLM.from_pretrained(base);
    model.dispose();
    const after = (await (await fetch("/requests")).json()) as number;
    if (after !== before) throw new Error(`${after - before} model file requests reached the server on the second load`);
  }, results);
  await check("AutoTokenizer.from_pretrained(File[])", async () => {
    const files = await Promise.all(
      ["tokenizer.json", "tokenizer_config.json"].map(async (name) => new File([await (await fetch(`${base}/${name}`)).blob()], name)),
    );
    const tok = await AutoTokenizer.from_pretrained(files);
    report.encoded = tok.encode(c.text);
  }, results);
}

async function main(): Promise<{ results: Result[]; adapter?: string; report?: ModelReport }> {
  const results: Result[] = [];
  const mode = new URLSearchParams(location.search).get("mode");
  if (mode === "model") {
    const report: ModelReport = {};
    await modelMode(results, report);
    return { results, report };
  }
  if (mode === "no-webgpu") {
    await check("getDevice() without WebGPU says what to do", async () => {
      let message = "";
      try {
        await getDevice();
      } catch (e) {
        message = (e as Error).message;
      }
      if (!/No WebGPU adapter found/.test(message) || !/--enable-unsafe-webgpu/.test(message)) {
        throw new Error(`unexpected: ${message || "got a device"}`);
      }
    }, results);
    return { results };
  }
  await check("device", async () => {
    await getDevice({ validate: true });
    const info = deviceInfo();
    if (info.host !== "browser") throw new Error(`host ${info.host}`);
  }, results);
  await check("matmul 33x65 · 65x17 (and transposed b)", async () => {
    const [M, K, N] = [33, 65, 17];
    const a = rand(M * K, 1);
    const b = rand(K * N, 2);
    const got = await matmul(Tensor.fromArray(Float32Array.from(a), [M, K]), Tensor.fromArray(Float32Array.from(b), [K, N])).toArray();
    expectAllClose(got, R.matmul(a, b, 1, M, K, N, false, false), { atol: 1e-4, rtol: 1e-4 }, "matmul");
  }, results);
  await check("backward of sum(exp(x) * w + x)", async () => {
    const xs = rand(17, 3);
    const ws = rand(17, 4);
    const x = Tensor.fromArray(Float32Array.from(xs), [17], { requires_grad: true });
    const w = Tensor.fromArray(Float32Array.from(ws), [17], { requires_grad: true });
    sum(add(mul(exp(x), w), x)).backward();
    expectAllClose(await x.grad!.toArray(), xs.map((v, i) => Math.exp(v) * ws[i]! + 1), { atol: 1e-5, rtol: 1e-5 }, "dx");
    expectAllClose(await w.grad!.toArray(), xs.map(Math.exp), { atol: 1e-5, rtol: 1e-5 }, "dw");
  }, results);
  return { results, adapter: deviceInfo().adapter.description || deviceInfo().adapter.vendor };
}

(globalThis as { __webtune?: unknown }).__webtune = main();
