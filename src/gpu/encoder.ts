// Dispatches are recorded into one shared command encoder (one compute pass) and submitted in batches:
// at a readback, or when the batch's uniform arena fills. Each dispatch's params live at their own aligned
// offset of one uniform buffer, written once per submission.
import { sizeClass } from "./buffers.ts";
import type { Pipeline } from "./pipelines.ts";

/**
 * What a batch needs of the device context (device.ts's Gpu, which owns the batch and so imports this file):
 * the device, its dispatch limit and validate mode, and where asynchronous failures go and are rethrown.
 */
export interface BatchContext {
  readonly device: GPUDevice;
  readonly info: { readonly validate: boolean; readonly limits: { readonly maxComputeWorkgroupsPerDimension: number } };
  /** Records an asynchronous failure to throw at the next sync point. */
  fail(err: Error): void;
  /** Throws the first recorded failure, if any. */
  check(): void;
}

export type BufferRef = GPUBuffer | { buffer: GPUBuffer; offset?: number; size?: number };

/** Params of one dispatch, by the field names of the shader's uniform struct. */
export type Params = Record<string, number>;

const ARENA_BYTES = 1 << 18; // 256 KiB of uniforms: about 1,000 dispatches per submission at 256-byte alignment

export class Batch {
  private encoder: GPUCommandEncoder | null = null;
  private pass: GPUComputePassEncoder | null = null;
  private readonly uniforms: GPUBuffer;
  private readonly arena = new ArrayBuffer(ARENA_BYTES);
  private readonly view = new DataView(this.arena);
  private used = 0;
  private readonly align: number;
  /** Error scopes still to be popped (validate mode); awaited at the next readback. */
  private scopes: Promise<void>[] = [];
  /** Labels of the kernels in the open batch, to name them if its submission fails. */
  private kernels = new Map<string, Promise<Error | null>>();
  /** Unmapped readback staging buffers by size class, reused by later reads. */
  private readbacks = new Map<number, GPUBuffer[]>();
  /** Upload staging buffers, destroyed once their batch is submitted. */
  private staging: GPUBuffer[] = [];
  /** Counts, for tests and benchmarks: a training step should be a handful of submissions. */
  readonly counters = { dispatches: 0, submissions: 0, readbacks: 0 };

  constructor(private gpu: BatchContext) {
    this.align = Math.max(16, gpu.device.limits.minUniformBufferOffsetAlignment);
    this.uniforms = gpu.device.createBuffer({ size: ARENA_BYTES, usage: 0x40 | 0x08, label: "uniform arena" }); // UNIFORM | COPY_DST
  }

  dispatch(p: Pipeline, buffers: Record<string, BufferRef>, params: Params, workgroups: readonly number[]): void {
    if (p.error) throw p.error;
    const [x = 1, y = 1, z = 1] = workgroups;
    if (x * y * z === 0) return;
    const maxWg = this.gpu.info.limits.maxComputeWorkgroupsPerDimension;
    if (x > maxWg || y > maxWg || z > maxWg) {
      throw new Error(`${p.label}: ${x}×${y}×${z} workgroups exceed maxComputeWorkgroupsPerDimension (${maxWg})`);
    }
    if (this.used + p.paramBytes > ARENA_BYTES) this.flush();
    const validate = this.gpu.info.validate;
    const device = this.gpu.device;
    if (validate) {
      device.pushErrorScope("out-of-memory");
      device.pushErrorScope("validation");
    }
    const offset = this.used;
    this.pack(p, params, offset);
    this.used += Math.ceil(p.paramBytes / this.align) * this.align;
    const entries: GPUBindGroupEntry[] = [];
    const given = new Set(Object.keys(buffers));
    for (const b of p.bindings) {
      if (b.kind === "uniform") {
        entries.push({ binding: b.binding, resource: { buffer: this.uniforms, offset, size: p.paramBytes } });
        continue;
      }
      const ref = buffers[b.name];
      if (!ref) throw new Error(`${p.label}: missing buffer \`${b.name}\` (needs ${names(p)})`);
      given.delete(b.name);
      entries.push({ binding: b.binding, resource: "buffer" in ref ? ref : { buffer: ref } });
    }
    if (given.size) throw new Error(`${p.label}: unexpected buffers ${[...given].join(", ")} (uses ${names(p)})`);
    const bindGroup = device.createBindGroup({ layout: p.layout, entries, label: p.label });
    const pass = this.computePass();
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, bindGroup);
    pass.dispatchWorkgroups(x, y, z);
    this.counters.dispatches++;
    this.kernels.set(p.label, p.ready);
    if (validate) {
      this.flush();
      const label = p.label;
      const pops = [device.popErrorScope(), device.popErrorScope()];
      this.scopes.push(
        Promise.all([...pops, p.ready]).then(([v, oom, compile]) => {
          const e = v ?? oom;
          if (compile) this.gpu.fail(compile as Error);
          else if (e) this.gpu.fail(new Error(`WebGPU error in ${label} (${x}×${y}×${z} workgroups): ${e.message}`));
        }),
      );
    }
  }

  /** Records a buffer-to-buffer copy in order with the dispatches. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    this.endPass();
    this.commandEncoder().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /**
   * Writes `data` into `dst` in order with the recorded work: straight through the queue when nothing is
   * pending, else through a staging buffer copied inside the batch (a pooled buffer may still be read by
   * recorded dispatches, and queue.writeBuffer would overtake them).
   */
  upload(dst: GPUBuffer, dstOffset: number, data: ArrayBufferView): void {
    if (data.byteLength === 0) return; // Deno's WebGPU panics on an empty writeBuffer
    const bytes = Math.ceil(data.byteLength / 4) * 4;
    const src = new Uint8Array(data.buffer as ArrayBuffer, data.byteOffset, data.byteLength);
    if (!this.encoder) {
      if (bytes === data.byteLength) this.gpu.device.queue.writeBuffer(dst, dstOffset, src);
      else {
        const padded = new Uint8Array(bytes);
        padded.set(src);
        this.gpu.device.queue.writeBuffer(dst, dstOffset, padded);
      }
      return;
    }
    const staging = this.gpu.device.createBuffer({ size: bytes, usage: 0x02 | 0x04, mappedAtCreation: true, label: "upload" }); // MAP_WRITE | COPY_SRC
    new Uint8Array(staging.getMappedRange()).set(src);
    staging.unmap();
    this.copy(staging, 0, dst, dstOffset, bytes);
    this.staging.push(staging);
  }

  /** Submits everything recorded so far. */
  flush(): void {
    this.gpu.check();
    if (!this.encoder) return;
    this.endPass();
    const device = this.gpu.device;
    if (this.used) device.queue.writeBuffer(this.uniforms, 0, this.arena, 0, this.used);
    // Errors found when a batch is finished cannot name one dispatch: name the batch's kernels.
    // (In validate mode each dispatch is its own batch, inside the dispatch's own error scope.)
    const scoped = !this.gpu.info.validate;
    if (scoped) device.pushErrorScope("validation");
    device.queue.submit([this.encoder.finish()]);
    const kernels = [...this.kernels.keys()];
    const ready = [...this.kernels.values()];
    this.kernels.clear();
    if (scoped) {
      this.scopes.push(
        Promise.all([device.popErrorScope(), ...ready]).then(([e, ...compile]) => {
          const cause = compile.find((c) => c);
          if (cause) return this.gpu.fail(cause);
          if (!e) return;
          const list = kernels.length > 8 ? `${kernels.slice(0, 8).join(", ")}, …` : kernels.join(", ");
          this.gpu.fail(
            new Error(`WebGPU error in a batch with ${list}: ${e.message} Run with getDevice({ validate: true }) to pin it to one kernel.`),
          );
        }),
      );
    }
    this.counters.submissions++;
    for (const b of this.staging) b.destroy();
    this.staging = [];
    this.encoder = null;
    this.used = 0;
  }

  /** Copies `bytes` of `buffer` to the CPU, after every recorded dispatch has run. */
  async read(buffer: GPUBuffer, offset: number, bytes: number): Promise<ArrayBuffer> {
    const copied = Math.ceil(bytes / 4) * 4;
    const size = Math.min(sizeClass(copied), Math.max(copied, this.gpu.device.limits.maxBufferSize));
    const staging =
      this.readbacks.get(size)?.pop() ??
      this.gpu.device.createBuffer({ size, usage: 0x01 | 0x08, label: "readback" }); // MAP_READ | COPY_DST
    this.copy(buffer, offset, staging, 0, copied);
    this.flush();
    this.counters.readbacks++;
    let reusable = false;
    try {
      await staging.mapAsync(1); // GPUMapMode.READ
      const out = staging.getMappedRange(0, copied).slice(0, bytes);
      staging.unmap();
      reusable = true;
      return out;
    } finally {
      if (reusable) {
        let list = this.readbacks.get(size);
        if (!list) this.readbacks.set(size, (list = []));
        list.push(staging);
      } else staging.destroy();
      await this.settle();
    }
  }

  /** Submits pending work and waits for the queue to drain; throws any error recorded meanwhile. */
  async sync(): Promise<void> {
    this.flush();
    await this.gpu.device.queue.onSubmittedWorkDone();
    await this.settle();
  }

  private async settle(): Promise<void> {
    const scopes = this.scopes;
    this.scopes = [];
    await Promise.all(scopes);
    this.gpu.check();
  }

  private pack(p: Pipeline, params: Params, offset: number): void {
    const left = new Set(Object.keys(params));
    p.params.forEach((f, i) => {
      left.delete(f.name);
      const v = params[f.name];
      if (v === undefined) {
        if (f.name.startsWith("_")) return this.view.setUint32(offset + 4 * i, 0, true);
        throw new Error(`${p.label}: missing param \`${f.name}\` (struct has ${p.params.map((q) => q.name).join(", ")})`);
      }
      if (f.type === "f32") this.view.setFloat32(offset + 4 * i, v, true);
      else if (f.type === "i32") this.view.setInt32(offset + 4 * i, v, true);
      else {
        if (!(v >= 0 && v <= 0xffffffff && Number.isInteger(v))) throw new Error(`${p.label}: param ${f.name}=${v} is not a u32`);
        this.view.setUint32(offset + 4 * i, v, true);
      }
    });
    if (left.size) throw new Error(`${p.label}: unknown params ${[...left].join(", ")}`);
  }

  private commandEncoder(): GPUCommandEncoder {
    this.encoder ??= this.gpu.device.createCommandEncoder({ label: "webtune batch" });
    return this.encoder;
  }

  private computePass(): GPUComputePassEncoder {
    this.pass ??= this.commandEncoder().beginComputePass({ label: "webtune" });
    return this.pass;
  }

  private endPass(): void {
    this.pass?.end();
    this.pass = null;
  }
}

function names(p: Pipeline): string {
  return p.bindings
    .filter((b) => b.kind !== "uniform")
    .map((b) => b.name)
    .join(", ");
}
