// What tests/trainer/fault-child.ts writes and tests/trainer/faults.test.ts checks: files whose bytes are a
// function of a counter k, and the tiny training run both processes make.
import { FACTS } from "../../src/data/facts.ts";
import type { SFTConfig } from "../../src/trainer/config.ts";

/** Deterministic pseudo-random bytes. */
export function faultBytes(size: number, seed: number): Uint8Array {
  const out = new Uint8Array(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** The files of write k: a checkpoint's or a save's (sizes vary with k, so a torn write shows). */
export function faultFiles(k: number, kind: "checkpoint" | "save"): Record<string, Uint8Array | string> {
  const files: Record<string, Uint8Array | string> = {
    "adapter_config.json": JSON.stringify({ k, kind }),
    "adapter_model.safetensors": faultBytes(256 * 1024 + (k % 7) * 4096, k),
    "tokenizer.json": JSON.stringify({ k, pad: "x".repeat(1000 + k) }),
  };
  if (kind === "checkpoint") {
    files["optimizer.safetensors"] = faultBytes(512 * 1024 + (k % 5) * 1024, k + 1000);
    files["trainer_state.json"] = JSON.stringify({ global_step: k });
  } else if (k % 2 === 0) {
    // Only even saves have it: an odd save must remove it (a mix of two saves would keep it).
    files["adapter_model.gguf"] = faultBytes(4096, k + 2000);
  }
  return files;
}

export const FAULT_ROWS: readonly Record<string, unknown>[] = FACTS.slice(0, 8) as unknown as Record<string, unknown>[];

/** The training run of the "train" trial: 3 steps, a checkpoint after each. */
export function faultTrainArgs(output_dir: string): Partial<SFTConfig> {
  return {
    output_dir,
    max_steps: 3,
    gradient_checkpointing: false,
    per_device_train_batch_size: 2,
    learning_rate: 5e-3,
    logging_steps: 1,
    save_strategy: "steps",
    save_steps: 1,
    save_total_limit: 2,
    report_to: "none",
    max_length: 32,
    seed: 11,
  };
}
