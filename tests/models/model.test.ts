// Each tiny Llama-family model (made by tools/make-model.ts with the fixture's seed; "llama-bias" is Llama with
// attention_bias and mlp_bias; issue 11's gemma2, gemma3, smollm3, phi3, phi4 and the sliding-window cases
// mistral-window and qwen2-window, whose windows of 4 are shorter than every test sequence) with a PEFT LoRA
// adapter on every linear layer: logits, loss and every LoRA gradient equal transformers + peft in float64
// (tools/fixtures/models.py → tests/fixtures/models.json), on a right-padded batch and on a packed row; greedy
// generation (14 tokens: past every window, and past phi3's longrope switch at 8) equals transformers', with the
// KV cache and without.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { AutoModelForCausalLM, PeftModel, tidy, type LlamaForCausalLM } from "../../src/index.ts";
import { fileSha256, makeAdapter, makeModel, type Arch } from "../../tools/make-model.ts";
import { fixtures, type FixtureTensor } from "../fixtures.ts";
import { expectAllClose, setup } from "../helpers.ts";

interface Batch {
  input_ids: number[][];
  attention_mask?: number[][];
  position_ids?: number[][];
  labels: number[][];
  logits: FixtureTensor;
  loss: number;
  grads: Record<string, FixtureTensor>;
  token_losses?: (number | null)[];
  lengths?: number[];
}

interface ModelCase {
  model: { arch: Arch; seed: number; dtype: "float32"; shards: number; tokenizer: boolean; config?: Record<string, unknown> };
  adapter: { seed: number; r: number; alpha: number; targets: "all-linear"; dropout: number };
  sha256: Record<string, string>;
  vocab_size: number;
  padded: Batch;
  packed: Batch;
  generate: { prompt: number[]; max_new_tokens: number; adapter: number[]; base: number[] };
}

const cases = fixtures("models") as unknown as Record<string, ModelCase>;
let root = "";

before(async () => {
  await setup();
  root = await mkdtemp(join(tmpdir(), "webtune-models-"));
});
after(() => rm(root, { recursive: true, force: true }));

/** The fixture's model and adapter directories, rebuilt from its seeds and checked byte for byte. */
export async function modelDirs(arch: string): Promise<{ dir: string; adapter: string; c: ModelCase }> {
  const c = cases[arch]!;
  const dir = join(root, arch);
  const adapter = join(dir, "adapter");
  await makeModel(dir, c.model);
  await makeAdapter(adapter, { model: dir, ...c.adapter });
  assert.equal(await fileSha256(join(dir, "model.safetensors")), c.sha256["model.safetensors"], "the fixture tool made other weights than the reference saw");
  assert.equal(await fileSha256(join(adapter, "adapter_model.safetensors")), c.sha256["adapter_model.safetensors"]);
  return { dir, adapter, c };
}

/** Logits compared at real tokens only (transformers computes rows for padding too; webtune gives them 0). */
function realRows(logits: ArrayLike<number>, mask: number[][] | undefined, V: number): number[] {
  const out: number[] = [];
  const flat = (mask ?? []).flat();
  for (let n = 0; n < logits.length / V; n++) {
    if (mask && flat[n] !== 1) continue;
    for (let v = 0; v < V; v++) out.push(logits[n * V + v]!);
  }
  return out;
}

/** Per-token losses -log softmax(logits[t])[labels[t+1]] of one row, null where the label is ignored. */
function tokenLosses(logits: Float32Array, labels: number[], V: number): (number | null)[] {
  const out: (number | null)[] = [];
  for (let t = 0; t + 1 < labels.length; t++) {
    const y = labels[t + 1]!;
    if (y === -100) {
      out.push(null);
      continue;
    }
    const row = logits.subarray(t * V, (t + 1) * V);
    let m = -Infinity;
    for (const x of row) m = Math.max(m, x);
    let s = 0;
    for (const x of row) s += Math.exp(x - m);
    out.push(m + Math.log(s) - row[y]!);
  }
  return out;
}

// f32 through 2 layers: logits and loss to 1e-4 relative; gradients to 1e-4 relative of each tensor's scale.
const close = { atol: 1e-4, rtol: 1e-4 };

async function checkGrads(peft: PeftModel, want: Record<string, FixtureTensor>): Promise<void> {
  const got = new Map(peft.named_parameters());
  const names = Object.keys(want);
  assert.equal(names.length, peft.adapted.length * 2, "one gradient per LoRA matrix");
  for (const name of names) {
    const p = got.get(name);
    assert.ok(p, `no parameter named ${name}`);
    assert.ok(p.grad, `${name} has no gradient`);
    const w = want[name]!;
    assert.deepEqual([...p.grad.shape], w.shape, name);
    const scale = Math.max(...w.data.map(Math.abs));
    expectAllClose(await p.grad.toArray(), w.data, { atol: 1e-4 * scale, rtol: 1e-4 }, name);
  }
}

for (const arch of Object.keys(cases)) {
  describe(`${arch}: forward and LoRA backward equal transformers + peft`, () => {
    let model: LlamaForCausalLM;
    let peft: PeftModel;
    let c: ModelCase;

    before(async () => {
      const d = await modelDirs(arch);
      c = d.c;
      model = await AutoModelForCausalLM.from_pretrained(d.dir);
      peft = await PeftModel.from_pretrained(model, d.adapter, { is_trainable: true });
    });
    after(() => model.dispose());

    test("padded batch of 2 with an attention mask", async () => {
      const b = c.padded;
      const out = tidy(() => peft.forward({ input_ids: b.input_ids, attention_mask: b.attention_mask, labels: b.labels, return_logits: true }));
      const V = c.vocab_size;
      assert.deepEqual([...out.logits!.shape], b.logits.shape);
      expectAllClose(realRows(await out.logits!.toArray(), b.attention_mask, V), realRows(b.logits.data, b.attention_mask, V), close, "logits");
      expectAllClose([await out.loss!.item()], [b.loss], close, "loss");
      tidy(() => out.loss!.backward());
      await checkGrads(peft, b.grads);
      for (const p of peft.parameters()) p.zero_grad();
    });

    test("packed row of three sequences given by position_ids", async () => {
      const b = c.packed;
      const out = tidy(() => peft.forward({ input_ids: b.input_ids, position_ids: b.position_ids, labels: b.labels, return_logits: true }));
      expectAllClose(await out.logits!.toArray(), b.logits.data, close, "logits");
      expectAllClose([await out.loss!.item()], [b.loss], close, "loss");
      tidy(() => out.loss!.backward());
      await checkGrads(peft, b.grads);
      for (const p of peft.parameters()) p.zero_grad();
    });

    test("packed equals separate: each token's loss in the packed row equals running its sequence alone", async () => {
      const b = c.packed;
      const V = c.vocab_size;
      const packed = tidy(() => peft.model.forward({ input_ids: b.input_ids, position_ids: b.position_ids }).logits!);
      const packedLosses = tokenLosses((await packed.toArray()) as Float32Array, b.labels[0]!, V);
      packed.dispose();
      let start = 0;
      const alone: (number | null)[] = [];
      for (const len of b.lengths!) {
        const ids = b.input_ids[0]!.slice(start, start + len);
        const logits = tidy(() => peft.model.forward({ input_ids: [ids] }).logits!);
        // Within a sequence its own labels; across the boundary the packed row's label is -100.
        alone.push(...tokenLosses((await logits.toArray()) as Float32Array, [-100, ...ids.slice(1)], V));
        if (start + len < b.input_ids[0]!.length) alone.push(null);
        logits.dispose();
        start += len;
      }
      assert.equal(alone.length, packedLosses.length);
      assert.deepEqual(alone.map((x) => x === null), packedLosses.map((x) => x === null));
      const valid = (a: (number | null)[]) => a.filter((x): x is number => x !== null);
      expectAllClose(valid(packedLosses), valid(alone), close, "packed vs separate token losses");
      expectAllClose(valid(packedLosses), valid(b.token_losses!), close, "packed token losses vs the reference");
    });
  });
}

for (const arch of Object.keys(cases)) {
  test(`${arch}: greedy generation equals transformers' (with and without the adapter), and the KV cache changes nothing`, async () => {
    const { dir, adapter, c } = await modelDirs(arch);
    const model = await AutoModelForCausalLM.from_pretrained(dir);
    try {
      const g = c.generate;
      const opts = { max_new_tokens: g.max_new_tokens, do_sample: false, eos_token_id: null };
      const base = await model.generate(g.prompt, opts);
      assert.deepEqual(base[0]!.slice(g.prompt.length), g.base, "base model greedy tokens");
      const peft = await PeftModel.from_pretrained(model, adapter);
      const streamed: number[] = [];
      const withCache = await peft.generate(g.prompt, { ...opts, on_token: (t) => streamed.push(t[0]!) });
      assert.deepEqual(withCache[0]!.slice(g.prompt.length), g.adapter, "adapter greedy tokens");
      assert.deepEqual(streamed, g.adapter, "streamed tokens");
      const noCache = await peft.generate(g.prompt, { ...opts, use_cache: false });
      assert.deepEqual(noCache, withCache, "use_cache: false");
      // A left-padded batch: the padded row continues exactly as it does alone.
      const short = g.prompt.slice(2);
      const batch = await peft.generate([g.prompt, [0, 0, ...short]], { ...opts, attention_mask: [g.prompt.map(() => 1), [0, 0, ...short.map(() => 1)]] });
      const alone = await peft.generate(short, opts);
      assert.deepEqual(batch[0], withCache[0]);
      // (Not for longrope: its short/long switch is on the batch's largest position, as in transformers, so a
      // padded row switches earlier in a batch than alone.)
      if (!model.longrope_switch) assert.deepEqual(batch[1]!.slice(g.prompt.length), alone[0]!.slice(short.length), "left-padded row");
      // Sampling with a seed replays.
      const s1 = await peft.generate(g.prompt, { max_new_tokens: 6, do_sample: true, temperature: 1.5, top_k: 20, top_p: 0.95, seed: 7 });
      const s2 = await peft.generate(g.prompt, { max_new_tokens: 6, do_sample: true, temperature: 1.5, top_k: 20, top_p: 0.95, seed: 7 });
      assert.deepEqual(s1, s2);
    } finally {
      model.dispose();
    }
  });
}
