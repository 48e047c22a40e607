// A first check of the browser's WebGPU adapter through the public API (the training UI comes later).
import { deviceInfo, getDevice, matmul, sum, Tensor } from "../src/index.ts";

const out = document.getElementById("out")!;
const button = document.getElementById("run") as HTMLButtonElement;

async function run(): Promise<void> {
  out.classList.remove("error");
  out.textContent = "Requesting a WebGPU device…";
  try {
    await getDevice();
    const info = deviceInfo();
    const a = Tensor.fromArray([[1, 2], [3, 4]], null, { requires_grad: true });
    const b = Tensor.fromArray([[5, 6], [7, 8]]);
    const c = matmul(a, b);
    sum(sum(c)).backward();
    out.textContent = [
      `adapter: ${info.adapter.description || info.adapter.vendor || "(no name)"}${info.adapter.isFallbackAdapter ? " (fallback)" : ""}`,
      `features: shader-f16 ${info.features.shader_f16}, subgroups ${info.features.subgroups}, timestamp-query ${info.features.timestamp_query}`,
      `maxStorageBufferBindingSize: ${info.limits.maxStorageBufferBindingSize} bytes`,
      `[[1,2],[3,4]] · [[5,6],[7,8]] = ${JSON.stringify(Array.from(await c.toArray()))}`,
      `d sum / d a = ${JSON.stringify(Array.from(await a.grad!.toArray()))}`,
    ].join("\n");
  } catch (e) {
    out.classList.add("error");
    out.textContent = (e as Error).message;
  }
}

button.addEventListener("click", run);
