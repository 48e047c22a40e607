// A pool of storage buffers by size class. Freed buffers are reused, never destroyed mid-flight: queue order
// makes reuse safe (a later dispatch runs after every earlier one that touched the buffer).

export const STORAGE_USAGE = 0x80 | 0x04 | 0x08; // STORAGE | COPY_SRC | COPY_DST (GPUBufferUsage may be a late global)

export interface MemoryStats {
  /** Bytes of pooled buffers currently held by tensors. */
  liveBytes: number;
  /** Highest liveBytes since the device was created or `resetPeak()`. */
  peakBytes: number;
  /** Bytes of freed buffers kept for reuse. */
  pooledBytes: number;
}

/**
 * Size classes: four per octave (1, 1.25, 1.5, 1.75 × 2^k) up to 16 MiB, sixteen per octave above
 * (big weights sit near the adapter's limits), at least 256 bytes.
 */
export function sizeClass(bytes: number): number {
  if (bytes <= 256) return 256;
  const p = 2 ** Math.floor(Math.log2(bytes));
  const step = p / (p >= 1 << 24 ? 16 : 4);
  return Math.ceil(bytes / step) * step;
}

export class BufferPool {
  private free = new Map<number, GPUBuffer[]>();
  private stats: MemoryStats = { liveBytes: 0, peakBytes: 0, pooledBytes: 0 };

  constructor(private device: GPUDevice) {}

  acquire(bytes: number, label = "tensor"): GPUBuffer {
    const size = sizeClass(Math.max(4, bytes));
    const max = this.device.limits.maxBufferSize;
    if (size > max && bytes <= max) return this.count(this.device.createBuffer({ size: align4(bytes), usage: STORAGE_USAGE, label }));
    if (bytes > max) {
      throw new Error(`A ${label} buffer of ${bytes} bytes exceeds this adapter's maxBufferSize (${max} bytes)`);
    }
    const list = this.free.get(size);
    const buf = list?.pop();
    if (buf) {
      this.stats.pooledBytes -= size;
      return this.count(buf);
    }
    return this.count(this.device.createBuffer({ size, usage: STORAGE_USAGE, label }));
  }

  release(buf: GPUBuffer): void {
    this.stats.liveBytes -= buf.size;
    this.stats.pooledBytes += buf.size;
    let list = this.free.get(buf.size);
    if (!list) this.free.set(buf.size, (list = []));
    list.push(buf);
  }

  memoryStats(): MemoryStats {
    return { ...this.stats };
  }

  resetPeak(): void {
    this.stats.peakBytes = this.stats.liveBytes;
  }

  /** Destroys pooled (free) buffers. Only safe once the queue is idle: `await flushAndWait()` first. */
  trim(): void {
    for (const list of this.free.values()) for (const b of list) b.destroy();
    this.free.clear();
    this.stats.pooledBytes = 0;
  }

  private count(buf: GPUBuffer): GPUBuffer {
    this.stats.liveBytes += buf.size;
    this.stats.peakBytes = Math.max(this.stats.peakBytes, this.stats.liveBytes);
    return buf;
  }
}

function align4(n: number): number {
  return Math.ceil(n / 4) * 4;
}
