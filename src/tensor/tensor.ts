// Tensor: a contiguous, row-major GPU buffer with a shape and a dtype, and its autograd state.
import { gpu } from "../gpu/device.ts";
import type { BufferPool } from "../gpu/buffers.ts";
import { backward, type GradNode } from "./autograd.ts";
import { track } from "./scope.ts";
import { f16ToF32, f32ToF16 } from "./half.ts";

/** Element types. Kernels compute in f32; `f16` is for storage (frozen weights), `i32` for token ids. */
export type DType = "f32" | "f16" | "i32";

export const BYTES_PER_ELEMENT: Record<DType, number> = { f32: 4, f16: 2, i32: 4 };

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

  constructor(storage: Storage, shape: readonly number[], dtype: DType = "f32", requires_grad = false) {
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
    const bytes = numel(shape) * BYTES_PER_ELEMENT[dtype];
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
    const host =
      dtype === "f32" ? Float32Array.from(flat) : dtype === "i32" ? Int32Array.from(flat) : f32ToF16(Float32Array.from(flat));
    gpu().batch.upload(t.buffer, 0, host);
    if (host instanceof Int32Array) t.host = host;
    t.requires_grad = options.requires_grad ?? false;
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

  /** Copies the data to the CPU (submits pending work first). f16 is widened to f32. */
  async toArray(): Promise<Float32Array | Int32Array> {
    const bytes = this.size * BYTES_PER_ELEMENT[this.dtype];
    const data = bytes ? await gpu().batch.read(this.buffer, 0, bytes) : new ArrayBuffer(0);
    if (this.dtype === "i32") return new Int32Array(data);
    if (this.dtype === "f16") return f16ToF32(new Uint16Array(data));
    return new Float32Array(data);
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
