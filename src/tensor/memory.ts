// Memory and submission control of the shared device.
import { gpu } from "../gpu/device.ts";
import type { MemoryStats } from "../gpu/buffers.ts";

/** Bytes held by tensors now and at most so far (the pool's accounting). */
export function memoryStats(): MemoryStats {
  return gpu().pool.memoryStats();
}

/** Submits recorded work without waiting. */
export function flush(): void {
  gpu().batch.flush();
}

/** Submits recorded work and waits until the GPU has finished it. */
export async function sync(): Promise<void> {
  await gpu().batch.sync();
}
