// Runs in headless Chromium (bundled by browser.test.ts): the device, a matmul, and one backward, checked
// against float64 references. Results go to window.__webtune for the Node side to assert on.
import { add, deviceInfo, exp, getDevice, matmul, mul, sum, Tensor } from "../../src/index.ts";
import * as R from "../reference/matmul.ts";
import { expectAllClose, rand } from "../compare.ts";

interface Result {
  name: string;
  ok: boolean;
  error?: string;
}

async function check(name: string, fn: () => Promise<void>, out: Result[]): Promise<void> {
  try {
    await fn();
    out.push({ name, ok: true });
  } catch (e) {
    out.push({ name, ok: false, error: String((e as Error).stack ?? e) });
  }
}

async function main(): Promise<{ results: Result[]; adapter?: string }> {
  const results: Result[] = [];
  const mode = new URLSearchParams(location.search).get("mode");
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
