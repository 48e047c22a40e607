// The one way kernels are launched: shader family + entry point + specialization, buffers and params by name.
import { gpu } from "./device.ts";
import type { BufferRef, Params } from "./encoder.ts";
import type { Specialization } from "./pipelines.ts";

export interface LaunchArgs {
  buffers: Record<string, BufferRef>;
  params?: Params;
  /** Workgroup counts; use `grid()` for element counts that may pass the per-dimension limit. */
  workgroups: readonly number[];
  consts?: Specialization;
}

export function launch(family: string, entry: string, args: LaunchArgs): void {
  const g = gpu();
  const p = g.pipelines.get(family, entry, args.consts);
  g.batch.dispatch(p, args.buffers, args.params ?? {}, args.workgroups);
}

/**
 * Workgroups covering `n` items at `perGroup` items each, folded into x×y when x would pass the
 * per-dimension limit. Shaders recover the flat group index as `wid.x + wid.y * nwg.x`.
 */
export function grid(n: number, perGroup: number): [number, number] {
  const groups = Math.ceil(n / perGroup);
  const max = gpu().info.limits.maxComputeWorkgroupsPerDimension;
  if (groups <= max) return [groups, 1];
  const y = Math.ceil(groups / max);
  return [Math.ceil(groups / y), y];
}

/** Threads for one-workgroup-per-row kernels: a power of two from 32 (a SIMD group) to 256, no wider than the row. */
export function rowWorkgroupSize(n: number): number {
  return Math.min(256, Math.max(32, 2 ** Math.ceil(Math.log2(n))));
}
