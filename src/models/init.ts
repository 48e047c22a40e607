// Seeded initial weights, the same bytes on every host: each tensor has its own xoshiro128** stream, seeded
// from (seed, tensor name) through FNV-1a and splitmix32, and only + - * / on its u32 draws (no Math.log or
// sin), so a value is a pure function of (seed, name, index) whatever the tensor order, sharding or chunking.
// The embedded tiny model's weights (tiny.ts) and the fixture factory's (tools/random-model.ts) come from
// here; PEFT seeds each adapted layer with the same hash of its name.
import type { WeightSpec } from "./architecture.ts";
import { splitmix32, xoshiro128, type Rng } from "./sampling.ts";

/** FNV-1a's offset basis: the hash of the empty string. */
export const FNV_OFFSET = 0x811c9dc5;

/** FNV-1a (32-bit) of the UTF-8 bytes of `s`, continued from the hash `h`. */
export function fnv1a(s: string, h = FNV_OFFSET): number {
  for (const b of new TextEncoder().encode(s)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h;
}

/** The stream of tensor `name` of a model made with `seed` (a u32). */
export function weightStream(seed: number, name: string): Rng {
  if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`seed must be a u32 (got ${seed})`);
  const s = new Uint32Array(4);
  let x = fnv1a(name, splitmix32(seed));
  for (let k = 0; k < 4; k++) s[k] = x = splitmix32(x);
  return xoshiro128(s);
}

/** Uniform in [-1, 1), in steps of 2^-31 (exact in float64). */
export function symmetric(rng: Rng): number {
  return rng.nextU32() / 2147483648 - 1;
}

/** Mean 0, variance 1: the sum of four uniforms (Irwin–Hall), scaled; bounded by ±2√3. */
function normal(rng: Rng): number {
  return (symmetric(rng) + symmetric(rng) + symmetric(rng) + symmetric(rng)) * 0.8660254037844386;
}

/**
 * Fills `out` with the next out.length values of weight `w` from its stream, by role:
 *   linear weight and LM head: uniform(±1.5/sqrt(fan_in)); embedding: 0.5·N(0,1); norm weight: 1 + 0.1·N(0,1);
 *   bias: 0.1·N(0,1) — each rounded to float32.
 */
export function fillWeight(rng: Rng, w: WeightSpec, out: Float32Array): void {
  switch (w.role) {
    case "linear":
    case "lm_head": {
      const bound = 1.5 / Math.sqrt(w.shape[1]!);
      for (let i = 0; i < out.length; i++) out[i] = symmetric(rng) * bound;
      return;
    }
    case "embedding":
      for (let i = 0; i < out.length; i++) out[i] = 0.5 * normal(rng);
      return;
    case "norm":
      for (let i = 0; i < out.length; i++) out[i] = 1 + 0.1 * normal(rng);
      return;
    case "bias":
      for (let i = 0; i < out.length; i++) out[i] = 0.1 * normal(rng);
      return;
  }
}

/** The float32 values of weight `w` of a model made with `seed`. */
export function tensorValues(seed: number, w: WeightSpec): Float32Array {
  const out = new Float32Array(w.shape.reduce((a, b) => a * b, 1));
  fillWeight(weightStream(seed, w.name), w, out);
  return out;
}
