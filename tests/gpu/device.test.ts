import assert from "node:assert/strict";
import { before, test } from "node:test";
import { deviceInfo, getDevice, memoryStats, sync, Tensor } from "../../src/index.ts";
import { gpu, hostName, initGpu } from "../../src/gpu/device.ts";
import { launch } from "../../src/gpu/launch.ts";
import { sizeClass } from "../../src/gpu/buffers.ts";
import { setup } from "../helpers.ts";

before(setup);

test("getDevice returns one shared device with the adapter's limits and features", async () => {
  const a = await getDevice();
  const b = await getDevice();
  assert.equal(a, b);
  const info = deviceInfo();
  assert.equal(info.host, hostName());
  // Requested at the adapter's value: bigger than WebGPU's defaults on every adapter we run on.
  assert.ok(info.limits.maxStorageBufferBindingSize > 128 * 2 ** 20 - 1, `binding size ${info.limits.maxStorageBufferBindingSize}`);
  assert.ok(info.limits.maxBufferSize >= 256 * 2 ** 20);
  assert.ok(info.limits.maxComputeInvocationsPerWorkgroup >= 256);
  for (const k of Object.keys(info.limits) as (keyof typeof info.limits)[]) {
    assert.equal(info.limits[k], (a.limits as unknown as Record<string, number>)[k], k);
  }
  assert.equal(info.features.shader_f16, a.features.has("shader-f16"));
  assert.equal(info.features.subgroups, a.features.has("subgroups"));
  assert.equal(info.features.timestamp_query, a.features.has("timestamp-query"));
  assert.ok(info.adapter.description.length > 0 || info.adapter.vendor.length > 0, "adapter has a name");
});

test("tensors round-trip through the GPU, f32, i32 and f16 storage", async () => {
  const x = Tensor.fromArray([[1, 2, 3], [4, 5, 6]]);
  assert.deepEqual(x.shape, [2, 3]);
  assert.deepEqual([...(await x.toArray())], [1, 2, 3, 4, 5, 6]);
  const ids = Tensor.fromArray(Int32Array.from([7, -1, 65535]));
  assert.equal(ids.dtype, "i32");
  assert.deepEqual([...(await ids.toArray())], [7, -1, 65535]);
  const h = Tensor.fromArray([0.5, -2, 65504, 1e-8, 3.14159], [5], { dtype: "f16" });
  assert.deepEqual([...(await h.toArray())], [0.5, -2, 65504, 0, 3.140625]);
  assert.equal(await Tensor.fromArray(2.5).item(), 2.5);
  assert.throws(() => Tensor.fromArray([1, 2, 3], [2, 2]), /3 values do not fill shape \[2, 2\]/);
  for (const t of [x, ids, h]) t.dispose();
  assert.throws(() => x.buffer, /was disposed/);
});

test("the pool reuses freed buffers by size class and tracks live and peak bytes", async () => {
  assert.equal(sizeClass(1), 256);
  assert.equal(sizeClass(1000), 1024);
  assert.equal(sizeClass(1025), 1280);
  assert.equal(sizeClass(5000), 5120);
  assert.equal(sizeClass(544 * 2 ** 20), 544 * 2 ** 20); // 151,936 × 896 f32 would be 640 MiB at four classes per octave
  assert.equal(sizeClass(545 * 2 ** 20), 576 * 2 ** 20);
  await sync();
  gpu().pool.resetPeak();
  const base = memoryStats();
  const a = Tensor.empty([1000]); // 4000 bytes -> 4096 class
  const b = Tensor.empty([1000]);
  assert.equal(memoryStats().liveBytes, base.liveBytes + 2 * 4096);
  const buf = a.buffer;
  a.dispose();
  assert.equal(memoryStats().liveBytes, base.liveBytes + 4096);
  const c = Tensor.empty([990]); // same class: gets a's buffer back
  assert.equal(c.buffer, buf);
  assert.equal(memoryStats().peakBytes, base.liveBytes + 2 * 4096);
  b.dispose();
  c.dispose();
  assert.equal(memoryStats().liveBytes, base.liveBytes);
});

test("ops are recorded into one batch and submitted at readback", async () => {
  const g = await initGpu({ validate: false });
  try {
    await sync();
    const before = { ...g.batch.counters };
    let x = Tensor.fromArray(new Float32Array(1000).fill(1));
    for (let i = 0; i < 200; i++) {
      const y = launchScale(x, 1.01);
      x.dispose();
      x = y;
    }
    assert.equal(g.batch.counters.submissions, before.submissions, "nothing submitted before readback");
    const v = (await x.toArray())[0]!;
    assert.ok(Math.abs(v - 1.01 ** 200) < 1e-3 * 1.01 ** 200, `got ${v}`);
    assert.equal(g.batch.counters.dispatches - before.dispatches, 200);
    assert.equal(g.batch.counters.submissions - before.submissions, 1, "one submission for 200 dispatches");
    x.dispose();
  } finally {
    await initGpu({ validate: true });
  }
});

function launchScale(x: Tensor, alpha: number): Tensor {
  const out = Tensor.empty(x.shape);
  launch("elementwise", "unary", {
    consts: { OP: 5 },
    buffers: { a: x.buffer, out: out.buffer },
    params: { n: x.size, na: x.size, nb: x.size, alpha },
    workgroups: [Math.ceil(x.size / 256)],
  });
  return out;
}

/** The same buffer bound as read-only and as writable storage in one dispatch: invalid. */
function launchAliased(t: Tensor): void {
  launch("elementwise", "binary", {
    consts: { OP: 0 },
    buffers: { a: t.buffer, b: t.buffer, out: t.buffer },
    params: { n: t.size, na: t.size, nb: t.size, alpha: 0 },
    workgroups: [1],
  });
}

test("a validation error is thrown with the kernel's label (validate mode: every dispatch in an error scope)", async () => {
  const t = Tensor.fromArray(new Float32Array(64));
  launchAliased(t);
  await assert.rejects(t.toArray(), /WebGPU error in elementwise\.binary\[OP=0\]/);
  t.dispose();
});

test("a shader that fails to compile is reported as such in batched mode too", async () => {
  await initGpu({ validate: false });
  try {
    const t = Tensor.fromArray(new Float32Array(4));
    launch("tensor", "fill", {
      consts: { WG: 0 },
      buffers: { out: t.buffer },
      params: { n: 4, na: 4, alpha: 1 },
      workgroups: [1],
    });
    await assert.rejects(t.toArray(), /Pipeline tensor\.fill\[WG=0\] failed: .*workgroup.?size/is);
    t.dispose();
  } finally {
    await initGpu({ validate: true });
  }
});

test("an uncaptured validation error surfaces at the next readback (validate mode off)", async () => {
  await initGpu({ validate: false });
  try {
    const t = Tensor.fromArray(new Float32Array(64));
    launchAliased(t);
    await assert.rejects(t.toArray(), /WebGPU error in a batch with elementwise\.binary\[OP=0\]: .*(writable usage|conflicting usages).*validate: true/s);
    t.dispose();
  } finally {
    await initGpu({ validate: true });
  }
});

test("a shader that fails to compile names its pipeline and the WGSL line", async () => {
  const t = Tensor.fromArray(new Float32Array(4));
  const bad = () =>
    launch("elementwise", "unary", {
      consts: { OP: 5, WG: 0 }, // @workgroup_size(0) is invalid
      buffers: { a: t.buffer, out: t.buffer },
      params: { n: 4, na: 4, nb: 4, alpha: 1 },
      workgroups: [1],
    });
  bad();
  await assert.rejects(
    t.toArray(),
    // Dawn also quotes the WGSL line; wgpu gives no position.
    /Pipeline elementwise\.unary\[OP=5,WG=0\] failed: .*workgroup.?size/is,
  );
  // Once known, the compile error is thrown by every later launch of that pipeline.
  assert.throws(bad, /Pipeline elementwise\.unary\[OP=5,WG=0\] failed/);
  t.dispose();
});

test("launch errors: unknown shader, missing buffer, bad param, too many workgroups", () => {
  const t = Tensor.fromArray(new Float32Array(4));
  assert.throws(() => launch("nope", "main", { buffers: {}, workgroups: [1] }), /No shader shaders\/nope\.wgsl/);
  assert.throws(() => launch("elementwise", "nope", { buffers: {}, workgroups: [1] }), /no entry point `nope`/);
  assert.throws(
    () => launch("tensor", "fill", { buffers: {}, params: { n: 4, na: 4, alpha: 1 }, workgroups: [1] }),
    /missing buffer `out`/,
  );
  assert.throws(
    () => launch("tensor", "fill", { buffers: { out: t.buffer }, params: { n: 4, alpha: 1 }, workgroups: [1] }),
    /missing param `na`/,
  );
  assert.throws(
    () => launch("tensor", "fill", { buffers: { out: t.buffer }, params: { n: -1, na: 4, alpha: 1 }, workgroups: [1] }),
    /param n=-1 is not a u32/,
  );
  assert.throws(
    () => launch("tensor", "fill", { buffers: { out: t.buffer }, params: { n: 4, na: 4, alpha: 1 }, workgroups: [1e6] }),
    /exceed maxComputeWorkgroupsPerDimension/,
  );
  t.dispose();
});

test("a lost device becomes a thrown error, and getDevice() then makes a new one", async () => {
  const old = await getDevice();
  const t = Tensor.fromArray([1, 2, 3]);
  old.destroy();
  await old.lost;
  await assert.rejects(t.toArray(), /device was destroyed/);
  const fresh = await getDevice({ validate: true });
  assert.notEqual(fresh, old);
  const u = Tensor.fromArray([4, 5]);
  assert.deepEqual([...(await u.toArray())], [4, 5]);
  u.dispose();
});

test("getDevice accepts a caller's own GPUDevice", async () => {
  const adapter = await requestAdapter();
  const own = await adapter.requestDevice();
  assert.equal(await getDevice({ device: own }), own);
  assert.equal(deviceInfo().host, hostName());
  const t = Tensor.fromArray([1, 2, 3]);
  assert.deepEqual([...(await t.toArray())], [1, 2, 3]);
  t.dispose();
});

async function requestAdapter(): Promise<GPUAdapter> {
  const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
  if (nav?.gpu) return (await nav.gpu.requestAdapter())!;
  const mod = await import("webgpu");
  const root = mod.create([]);
  (globalThis as { keepDawn?: unknown }).keepDawn = root; // dawn.node must not be garbage-collected
  return (await root.requestAdapter())!;
}
