// Tensor: a contiguous, row-major GPU buffer with a shape and a dtype, and reverse-mode autograd over tensors.
// An op records a node on its output (record(): its inputs, the buffers it saved, and its backward closure,
// written beside the forward in src/ops); backward() walks the nodes in reverse topological order, releasing
// each node's saved buffers and its incoming gradient as soon as it has run. The walk lives with the class
// because Tensor.backward() runs it and it makes tensors (the seed, copies, accumulated sums: fill and axpy of
// shaders/tensor.wgsl, the one kernel that also adds biases).
import type { BufferPool } from "../gpu/buffers.ts";
import { gpu } from "../gpu/device.ts";
import { grid, launch } from "../gpu/launch.ts";
import { is_grad_enabled, no_grad } from "./autograd.ts";
import { formatBytes, formatShapeError, isWeightFormat, WEIGHT_FORMATS, type WeightFormat } from "./format.ts";
import { keep, track } from "./scope.ts";

/**
 * Element types: a weight format of format.ts (kernels compute in f32; f16 stores frozen weights), or
 * `i32` for token ids.
 */
export type DType = WeightFormat | "i32";

/** Bytes of n elements of `dtype`. */
export function storageBytes(dtype: DType, n: number): number {
  return isWeightFormat(dtype) ? formatBytes(dtype, n) : 4 * n;
}

/** Gradients of a node's inputs given the gradient of its output; `needs[i]` says whether input i wants one. */
export type BackwardFn = (dy: Tensor, needs: boolean[]) => (Tensor | null)[];

export interface GradNode {
  name: string;
  inputs: Tensor[];
  backward: BackwardFn;
  saved: Storage[];
}

export type NestedArray = number | NestedArray[];

export interface TensorOptions {
  requires_grad?: boolean;
  dtype?: DType;
}

/** A pooled GPU buffer shared by a tensor and its views and by the autograd nodes that saved it. */
export class Storage {
  refs = 1;
  constructor(
    readonly buffer: GPUBuffer,
    readonly bytes: number,
    /** The pool of the device that made the buffer (a later device after a loss has its own). */
    private readonly pool: BufferPool,
  ) {}

  retain(): Storage {
    if (this.refs <= 0) throw new Error("retain() on a freed tensor buffer");
    this.refs++;
    return this;
  }

  release(): void {
    if (this.refs <= 0) return;
    if (--this.refs === 0) this.pool.release(this.buffer);
  }
}

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  /** Number of elements. */
  readonly size: number;
  requires_grad: boolean;
  /** Accumulated gradient (leaves with `requires_grad` only), filled by `backward()`. */
  grad: Tensor | null = null;
  /** The op that made this tensor; cleared once backward has gone through it. */
  node: GradNode | null = null;
  /** @internal */
  storage: Storage;
  /**
   * The values of an i32 tensor made by fromArray (token ids are small): ops that need ids on the CPU
   * (embedding's gradient grouping, counting labels) read them here instead of reading the GPU back.
   */
  host: Int32Array | null = null;
  private disposed = false;

  /** A packed format's (q4_0, nf4, …) rows, the last dim, are whole blocks: a reshape that splits one throws. */
  constructor(storage: Storage, shape: readonly number[], dtype: DType = "f32", requires_grad = false) {
    const blocks = dtype === "f32" || dtype === "i32" ? null : formatShapeError(dtype, shape);
    if (blocks) throw new Error(blocks);
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = dtype;
    this.size = numel(shape);
    this.requires_grad = requires_grad;
    track(this);
  }

  /** An uninitialised tensor from the pool. */
  static empty(shape: readonly number[], dtype: DType = "f32"): Tensor {
    for (const d of shape) {
      if (!Number.isInteger(d) || d < 0) throw new Error(`Invalid shape [${shape.join(", ")}]`);
    }
    const bytes = storageBytes(dtype, numel(shape));
    const pool = gpu().pool;
    return new Tensor(new Storage(pool.acquire(bytes), bytes, pool), shape, dtype);
  }

  /**
   * A tensor from data: a flat array with a shape, or nested arrays (shape inferred).
   * `Tensor.fromArray([[1, 2], [3, 4]], null, { requires_grad: true })`
   */
  static fromArray(
    data: NestedArray | ArrayLike<number>,
    shape?: readonly number[] | null,
    options: TensorOptions = {},
  ): Tensor {
    const dtype = options.dtype ?? (data instanceof Int32Array ? "i32" : "f32");
    let flat: ArrayLike<number>;
    if (Array.isArray(data) && Array.isArray(data[0])) {
      const inferred = inferShape(data);
      flat = flatten(data as NestedArray[]);
      if (shape && numel(shape) !== flat.length) throw new Error(`Data of shape [${inferred}] does not fit shape [${shape}]`);
      shape ??= inferred;
    } else if (typeof data === "number") {
      flat = [data];
      shape ??= [];
    } else {
      flat = data as ArrayLike<number>;
      shape ??= [flat.length];
    }
    if (numel(shape) !== flat.length) {
      throw new Error(`fromArray: ${flat.length} values do not fill shape [${shape.join(", ")}] (${numel(shape)} elements)`);
    }
    const t = Tensor.empty(shape, dtype);
    // A packed format quantizes row by row (the last dim; int8 scales each row).
    const row = shape.length ? shape[shape.length - 1]! : 1;
    const host = dtype === "i32" ? Int32Array.from(flat) : WEIGHT_FORMATS[dtype].fromFloat32(Float32Array.from(flat), row);
    gpu().batch.upload(t.buffer, 0, host);
    if (host instanceof Int32Array) t.host = host;
    t.requires_grad = options.requires_grad ?? false;
    return t;
  }

  /**
   * A frozen tensor from its stored bytes in a packed format (quant.ts's layouts: a GGUF tensor's data as the
   * file holds it, or quantize()'s output). `name` is for errors: "model.layers.0.mlp.up_proj.weight [8, 40]:
   * a q4_0 row of 40 elements is not whole blocks of 32; …".
   */
  static fromQuantized(bytes: Uint8Array, shape: readonly number[], dtype: WeightFormat, name = "tensor"): Tensor {
    const why = formatShapeError(dtype, shape, name);
    if (why) throw new Error(`fromQuantized: ${why}`);
    const need = storageBytes(dtype, numel(shape));
    if (bytes.byteLength !== need) {
      throw new Error(`fromQuantized: ${name} [${shape.join(", ")}] in ${dtype} takes ${need} bytes, got ${bytes.byteLength}`);
    }
    const t = Tensor.empty(shape, dtype);
    gpu().batch.upload(t.buffer, 0, bytes);
    return t;
  }

  get ndim(): number {
    return this.shape.length;
  }

  /** The GPU buffer; valid while any holder (this tensor, a view, a saved autograd input) keeps it. */
  get buffer(): GPUBuffer {
    if (this.storage.refs <= 0) throw new Error(`Tensor [${this.shape.join(", ")}] was disposed`);
    return this.storage.buffer;
  }

  /** Copies the data to the CPU (submits pending work first). A weight format is widened to f32. */
  async toArray(): Promise<Float32Array | Int32Array> {
    const bytes = storageBytes(this.dtype, this.size);
    const data = bytes ? await gpu().batch.read(this.buffer, 0, bytes) : new ArrayBuffer(0);
    return this.dtype === "i32" ? new Int32Array(data) : WEIGHT_FORMATS[this.dtype].toFloat32(data);
  }

  /** The single value of a one-element tensor. */
  async item(): Promise<number> {
    if (this.size !== 1) throw new Error(`item() needs a tensor with one element, got shape [${this.shape.join(", ")}]`);
    return (await this.toArray())[0]!;
  }

  /** Backpropagates from this tensor; `gradient` defaults to 1 for a one-element tensor. */
  backward(gradient?: Tensor): void {
    backward(this, gradient);
  }

  zero_grad(): void {
    this.grad?.dispose();
    this.grad = null;
  }

  /** Releases this tensor's hold on its buffer (autograd nodes that saved it keep theirs). */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.storage.release();
  }

  get isDisposed(): boolean {
    return this.disposed;
  }

  toString(): string {
    return `Tensor(shape=[${this.shape.join(", ")}], dtype=${this.dtype}${this.requires_grad ? ", requires_grad" : ""})`;
  }
}

/**
 * Makes `out` remember the op that produced it, when grad is enabled and some input requires grad.
 * `save` lists tensors the backward closure reads: their buffers stay alive until it has run.
 */
export function record(out: Tensor, name: string, inputs: Tensor[], backward: BackwardFn, save: Tensor[] = []): Tensor {
  if (!is_grad_enabled() || !inputs.some((t) => t.requires_grad)) return out;
  out.requires_grad = true;
  out.node = { name, inputs, backward, saved: save.map((t) => t.storage.retain()) };
  fromOp.add(out);
  return out;
}

/** Tensors made by an op (non-leaves), so a second backward through a freed graph is caught. */
const fromOp = new WeakSet<Tensor>();

export function backward(root: Tensor, gradient?: Tensor): void {
  if (!root.requires_grad) {
    throw new Error(
      `backward() on ${root}: it does not require grad and has no grad history. ` +
        "Create the inputs with { requires_grad: true } (and not inside no_grad()).",
    );
  }
  if (fromOp.has(root) && !root.node) {
    throw new Error(`backward() on ${root}: its graph was already freed (by an earlier backward(), or by tidy())`);
  }
  if (gradient) {
    if (gradient.shape.join() !== root.shape.join()) {
      throw new Error(`backward(): gradient shape [${gradient.shape}] does not match tensor shape [${root.shape}]`);
    }
  } else if (root.size !== 1) {
    throw new Error(`backward() without a gradient needs a one-element tensor; got shape [${root.shape}]`);
  }
  const order = topoSort(root);
  no_grad(() => {
    // The caller's gradient is copied: rules may pass it through and accumulation writes in place.
    const grads = new Map<Tensor, Tensor>([[root, gradient ? copyOf(gradient) : full(root.shape, 1)]]);
    for (let k = order.length - 1; k >= 0; k--) {
      const t = order[k]!;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.node;
      if (!node) {
        if (fromOp.has(t)) throw new Error(`backward(): the graph through ${t} was already freed (by an earlier backward(), or by tidy())`);
        accumulateLeaf(t, g);
        continue;
      }
      t.node = null;
      const needs = node.inputs.map((i) => i.requires_grad);
      const gs = node.backward(g, needs);
      for (const s of node.saved) s.release();
      // A rule may pass dy through (add) or return one tensor twice: give each input its own.
      const seen = new Set<Tensor>();
      for (let i = 0; i < gs.length; i++) {
        const gi = gs[i];
        if (!gi) continue;
        if (seen.has(gi)) gs[i] = copyOf(gi);
        seen.add(gi);
      }
      if (!seen.has(g)) g.dispose();
      node.inputs.forEach((input, i) => {
        const gi = gs[i];
        if (!gi) return;
        if (!needs[i]) return gi.dispose();
        if (gi.shape.join() !== input.shape.join()) {
          throw new Error(`${node.name} backward: gradient [${gi.shape}] for input ${i} of shape [${input.shape}]`);
        }
        const prevG = grads.get(input);
        if (prevG) {
          axpy(prevG, gi);
          gi.dispose();
        } else grads.set(input, gi);
      });
    }
  });
}

function accumulateLeaf(t: Tensor, g: Tensor): void {
  if (t.grad) {
    axpy(t.grad, g);
    g.dispose();
  } else t.grad = keep(g);
}

function copyOf(t: Tensor): Tensor {
  const c = Tensor.empty(t.shape, t.dtype);
  gpu().batch.copy(t.buffer, 0, c.buffer, 0, Math.ceil(t.storage.bytes / 4) * 4);
  return c;
}

/** Post-order over tensors that require grad: every tensor comes after all of its inputs. */
function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const visited = new Set<Tensor>();
  const stack: [Tensor, boolean][] = [[root, false]];
  while (stack.length) {
    const [t, done] = stack.pop()!;
    if (done) {
      order.push(t);
      continue;
    }
    if (visited.has(t)) continue;
    visited.add(t);
    stack.push([t, true]);
    for (const i of t.node?.inputs ?? []) if (i.requires_grad && !visited.has(i)) stack.push([i, false]);
  }
  return order;
}

const WG = 256;

/** A new f32 tensor with every element `value`. */
export function full(shape: readonly number[], value: number): Tensor {
  const out = Tensor.empty(shape);
  launch("tensor", "fill", {
    buffers: { out: out.buffer },
    params: { n: out.size, na: out.size, alpha: value },
    workgroups: grid(out.size, WG),
  });
  return out;
}

/**
 * acc += alpha * a, in place, where a's elements repeat over acc's leading elements: the same size (gradient
 * accumulation) or a bias [cols] over the rows of acc [..., cols]. f32 only.
 */
export function axpy(acc: Tensor, a: Tensor, alpha = 1): void {
  const fits = a.size === 0 ? acc.size === 0 : acc.size % a.size === 0;
  if (acc.dtype !== "f32" || a.dtype !== "f32" || !fits) {
    throw new Error(`axpy: acc ${acc} += a ${a}: needs f32 tensors, a's size dividing acc's`);
  }
  launch("tensor", "axpy", {
    buffers: { a: a.buffer, acc: acc.buffer },
    params: { n: acc.size, na: a.size, alpha },
    workgroups: grid(acc.size, WG),
  });
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function flatten(data: NestedArray[]): number[] {
  const out: number[] = [];
  const walk = (d: NestedArray) => (Array.isArray(d) ? d.forEach(walk) : out.push(d));
  data.forEach(walk);
  return out;
}

function inferShape(data: NestedArray): number[] {
  const shape: number[] = [];
  let d: NestedArray = data;
  while (Array.isArray(d)) {
    shape.push(d.length);
    d = d[0]!;
  }
  return shape;
}
