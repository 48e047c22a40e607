// Text generation as transformers' generate(): prefill the prompt into a KV cache on the GPU, then one token
// per step — greedy or sampled (temperature, top-k, top-p) with a seed — until max_new_tokens or EOS. The model
// applies each layer's window, soft-cap, scale and RoPE (forwardCached) and the final soft-cap (logitsOf); a
// longrope model re-fills its cache once, where its RoPE switches to the long factors.
import { reshape, slice } from "../ops/layout.ts";
import { no_grad } from "../tensor/autograd.ts";
import { tidy } from "../tensor/scope.ts";
import { Tensor } from "../tensor/tensor.ts";
import { flatBatch, type TokenBatch } from "../ops/token_batch.ts";
import type { CausalLM, KVCacheLayer } from "./causal_lm.ts";
import { createRng, sampleToken, samplingOptions, type SamplingOptions } from "./sampling.ts";

export interface GenerateOptions extends SamplingOptions {
  /** New tokens per row at most (default generation_config.json's max_new_tokens, else 20). */
  max_new_tokens?: number;
  /** A row stops after generating one of these (default generation_config.json's, else config.json's); null: never. */
  eos_token_id?: number | readonly number[] | null;
  /** Fills a finished row's later positions (default generation_config's or config's pad, else the first EOS). */
  pad_token_id?: number | null;
  /** [B, T] 1 for prompt tokens, 0 for (left) padding; default all ones. */
  attention_mask?: TokenBatch;
  /** The sampling stream (a u32; default 0): the same seed gives the same tokens. */
  seed?: number;
  /** Keep keys and values of earlier tokens on the GPU (default true); false recomputes the whole sequence each step. */
  use_cache?: boolean;
  /** Called after each step with the new token of every row (as transformers' streamer.put). */
  streamer?: { put(tokens: number[]): void; end?(): void };
  /** Called after each step with the new token of every row. */
  on_token?: (tokens: number[], step: number) => void;
}

/** The prompt as rows: a flat number[] or Int32Array is one row; number[][] or another TokenBatch. */
function promptRows(input_ids: TokenBatch): { data: Int32Array; B: number; T: number } {
  const one = (Array.isArray(input_ids) || input_ids instanceof Int32Array) && (input_ids.length === 0 || typeof input_ids[0] === "number");
  return flatBatch("generate: input_ids", one ? [input_ids as number[]] : input_ids);
}

function eosList(v: unknown): number[] {
  if (v === null || v === undefined) return [];
  return (Array.isArray(v) ? v : [v]).map(Number);
}

/**
 * Generates up to max_new_tokens after each row of `input_ids`; returns every row as prompt + new tokens
 * (like transformers' output ids; a row that met EOS is filled with pad_token_id up to the longest row).
 */
export async function generate(
  model: CausalLM,
  input_ids: TokenBatch,
  options: GenerateOptions = {},
): Promise<number[][]> {
  const gc = model.generation_config ?? {};
  const pick = <K extends keyof GenerateOptions>(key: K, fallback: GenerateOptions[K]): GenerateOptions[K] =>
    options[key] !== undefined ? options[key] : gc[key] !== undefined ? (gc[key] as GenerateOptions[K]) : fallback;
  const sampling = samplingOptions({
    do_sample: pick("do_sample", false),
    temperature: pick("temperature", 1),
    top_k: pick("top_k", 50),
    top_p: pick("top_p", 1),
  });
  const maxNew = pick("max_new_tokens", 20)!;
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new Error(`generate: max_new_tokens must be a non-negative integer, got ${maxNew}`);
  const eos = new Set(eosList(options.eos_token_id !== undefined ? options.eos_token_id : (gc.eos_token_id ?? model.config.eos_token_id)));
  const pad = pick("pad_token_id", model.config.pad_token_id) ?? [...eos][0] ?? 0;
  const { data: prompt, B, T } = promptRows(input_ids);
  const V = model.config.vocab_size;
  for (const id of prompt) if (id < 0 || id >= V) throw new Error(`generate: token id ${id} is out of range for a vocabulary of ${V}`);
  const promptMask = options.attention_mask ? flatBatch("generate: attention_mask", options.attention_mask, { B, T }).data : new Int32Array(B * T).fill(1);
  const rng = createRng(options.seed ?? 0);
  const useCache = options.use_cache ?? true;
  const switchAt = model.longrope_switch ?? null;

  // transformers' positions for left-padded prompts: cumsum(mask) - 1, and 1 on padding.
  const next = new Int32Array(B); // the position of each row's next token
  const promptPos = new Int32Array(B * T);
  for (let b = 0; b < B; b++) {
    let c = 0;
    for (let t = 0; t < T; t++) {
      const m = promptMask[b * T + t]!;
      c += m;
      promptPos[b * T + t] = m ? c - 1 : 1;
    }
    next[b] = c;
  }
  const rows: number[][] = Array.from({ length: B }, (_, b) => Array.from(prompt.subarray(b * T, (b + 1) * T)));
  const maskRows: number[][] = Array.from({ length: B }, (_, b) => Array.from(promptMask.subarray(b * T, (b + 1) * T)));
  const done = new Array<boolean>(B).fill(false);

  const wasTraining = model.training;
  model.eval();
  const cap = T + maxNew;
  const cache: KVCacheLayer[] = useCache
    ? Array.from({ length: model.config.num_hidden_layers }, () => ({
        k: Tensor.empty([B, cap, model.config.num_key_value_heads, model.config.head_dim]),
        v: Tensor.empty([B, cap, model.config.num_key_value_heads, model.config.head_dim]),
      }))
    : [];
  try {
    for (let step = 0; step < maxNew; step++) {
      const past = step === 0 ? 0 : T + step - 1;
      const logits = tidy(() =>
        no_grad(() => {
          if (!useCache) {
            const all = model.forward({ input_ids: rows, attention_mask: maskRows, position_ids: positionsOf(maskRows) }).logits!;
            const L = rows[0]!.length;
            return lastRows(all, B, L, V);
          }
          const L = rows[0]!.length;
          if (step > 0 && switchAt !== null && L >= switchAt + 1 && past <= switchAt) {
            // longrope switches to its long factors here: the cached keys had the short ones, so the whole
            // sequence is run again into the cache (as Phi3ForCausalLM drops its cache at this length).
            const h = model.forwardCached(Int32Array.from(rows.flat()), Int32Array.from(positionsOf(maskRows).flat()), B, L, 0, Int32Array.from(maskRows.flat()), cache);
            return model.logitsOf(h);
          }
          const S = step === 0 ? T : 1;
          const ids = step === 0 ? prompt : Int32Array.from(rows.map((r) => r[r.length - 1]!));
          const pos = step === 0 ? promptPos : Int32Array.from(next, (p) => p - 1);
          const h = model.forwardCached(ids, pos, B, S, past, Int32Array.from(maskRows.flat()), cache);
          return model.logitsOf(h);
        }),
      );
      const values = (await logits.toArray()) as Float32Array;
      logits.dispose();
      const tokens: number[] = [];
      for (let b = 0; b < B; b++) {
        const tok = done[b] ? pad : sampleToken(values.subarray(b * V, (b + 1) * V), sampling, rng);
        if (!done[b] && eos.has(tok)) done[b] = true;
        tokens.push(tok);
        rows[b]!.push(tok);
        maskRows[b]!.push(1);
        next[b]!++;
      }
      options.streamer?.put(tokens);
      options.on_token?.(tokens, step);
      if (done.every(Boolean)) break;
    }
  } finally {
    for (const c of cache) {
      c.k.dispose();
      c.v.dispose();
    }
    model.train(wasTraining);
    options.streamer?.end?.();
  }
  return rows;
}

/** transformers' position ids of (left-padded) rows: cumsum(mask) - 1, 1 on padding. */
function positionsOf(mask: number[][]): number[][] {
  return mask.map((r) => {
    let c = 0;
    return r.map((m) => (m ? ++c - 1 : 1));
  });
}

/** The logits of each row's last position: [B, L, V] → [B, V]. */
function lastRows(all: Tensor, B: number, L: number, V: number): Tensor {
  return reshape(slice(all, 1, L - 1, L), [B, V]);
}
