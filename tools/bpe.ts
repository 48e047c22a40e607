// A small, deterministic byte-level BPE tokenizer in Hugging Face's file format: the tokenizer of the
// embedded tiny model (committed as src/data/tiny_tokenizer.ts, written from here by tools/tiny-tokenizer.ts)
// and of the tests' models (tools/tokenizer-fixture.ts, tools/random-model.ts).
//
// makeTokenizerFiles() returns the contents of tokenizer.json, tokenizer_config.json and
// special_tokens_map.json of a GPT-2 / SmolLM2-style tokenizer: ids 0-2 are the special tokens
// <|endoftext|> (pad), <|im_start|> and <|im_end|> (eos); ids 3-258 are the 256 byte-level symbols in byte
// order; then MERGES merges learned by the tiny BPE trainer below from TRAINING_TEXT (ids 259-…, 319 tokens
// in all). Pre-tokenizer, post-processor and decoder are ByteLevel, as in SmolLM2. The chat template is
// ChatML with tools rendered in a system block and every assistant message's content and its <|im_end|>
// inside {% generation %} … {% endgeneration %}, as TRL's templates have them for assistant_only_loss.
//
// Everything is a pure function of the constants here: the same files, byte for byte, on every run and host.

/** The special tokens, in id order from 0. */
export const SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] as const;

/** How many merges the trainer learns. */
export const MERGES = 60;

/** What the merges are learned from: plain English, so common pairs ("th", "Ġt", "in", …) win. */
export const TRAINING_TEXT = [
  "The quick brown fox jumps over the lazy dog. The dog is sleeping in the sun, and the fox is thinking about",
  "the weather. Then the fox asks the dog: what is the time? The dog answers that it is the time to rest.",
  "In the morning the children walk to the station, where the train is waiting for them. They are talking",
  "and laughing, and the teacher is reading the notes of the lesson. There is nothing in the world that they",
  "want more than this: the sound of the water, the light on the hills, and the thing that they are learning.",
  "I think that the assistant should answer the question of the user with the information that is there.",
].join("\n");

/** ChatML with tools in a system block and {% generation %} around each assistant message and its end token. */
export const CHAT_TEMPLATE = [
  "{%- if tools %}",
  "{{- '<|im_start|>system\\n' }}",
  "{%- if messages[0].role == 'system' %}",
  "{{- messages[0].content + '\\n\\n' }}",
  "{%- endif %}",
  "{{- 'You may call these tools. Each is a JSON schema:\\n<tools>' }}",
  "{%- for tool in tools %}",
  "{{- '\\n' + (tool | tojson) }}",
  "{%- endfor %}",
  "{{- '\\n</tools>\\nTo call one, answer <tool_call>{\"name\": ..., \"arguments\": ...}</tool_call>.<|im_end|>\\n' }}",
  "{%- elif messages[0].role == 'system' %}",
  "{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}",
  "{%- endif %}",
  "{%- for message in messages %}",
  "{%- if not (loop.first and message.role == 'system') %}",
  "{%- if message.role == 'assistant' %}",
  "{{- '<|im_start|>assistant\\n' }}",
  "{%- generation %}",
  "{{- message.content + '<|im_end|>' }}",
  "{%- endgeneration %}",
  "{{- '\\n' }}",
  "{%- else %}",
  "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}",
  "{%- endif %}",
  "{%- endif %}",
  "{%- endfor %}",
  "{%- if add_generation_prompt %}",
  "{{- '<|im_start|>assistant\\n' }}",
  "{%- endif %}",
].join("\n");

/** GPT-2's reversible map from bytes to printable characters (bytes_to_unicode). */
export function bytesToUnicode(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const out = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    out[b] = String.fromCodePoint(printable.includes(b) ? b : 256 + extra++);
  }
  return out;
}

/** GPT-2's pre-tokenization regex (what the ByteLevel pre-tokenizer with use_regex splits on). */
const GPT2_SPLIT = /'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+/gu;

/**
 * Learns `count` merges from `text`: words are GPT-2 pre-tokens in byte-level symbols; each step merges the
 * most frequent adjacent pair, ties broken by the pair's string order (so the result never depends on
 * iteration order).
 */
export function trainBpe(text: string, count: number): [string, string][] {
  const b2u = bytesToUnicode();
  const enc = new TextEncoder();
  const freq = new Map<string, number>();
  for (const word of text.match(GPT2_SPLIT) ?? []) {
    const symbols = Array.from(enc.encode(word), (b) => b2u[b]).join("\u0000");
    freq.set(symbols, (freq.get(symbols) ?? 0) + 1);
  }
  let words = [...freq].map(([w, n]) => ({ symbols: w.split("\u0000"), n }));
  const merges: [string, string][] = [];
  for (let step = 0; step < count; step++) {
    const pairs = new Map<string, number>();
    for (const { symbols, n } of words) {
      for (let i = 0; i + 1 < symbols.length; i++) {
        const key = `${symbols[i]}\u0000${symbols[i + 1]}`;
        pairs.set(key, (pairs.get(key) ?? 0) + n);
      }
    }
    let best: string | null = null;
    let bestN = 0;
    for (const [key, n] of pairs) {
      if (n > bestN || (n === bestN && best !== null && key < best)) {
        best = key;
        bestN = n;
      }
    }
    if (best === null || bestN < 2) break;
    const [a, b] = best.split("\u0000") as [string, string];
    merges.push([a, b]);
    words = words.map(({ symbols, n }) => {
      const out: string[] = [];
      for (let i = 0; i < symbols.length; i++) {
        if (i + 1 < symbols.length && symbols[i] === a && symbols[i + 1] === b) {
          out.push(a + b);
          i++;
        } else {
          out.push(symbols[i]);
        }
      }
      return { symbols: out, n };
    });
  }
  return merges;
}

/** The file contents (name → JSON text) of the fixture tokenizer. */
export function makeTokenizerFiles(): Record<string, string> {
  const vocab: Record<string, number> = {};
  SPECIAL_TOKENS.forEach((t, i) => (vocab[t] = i));
  for (const symbol of bytesToUnicode()) vocab[symbol] = Object.keys(vocab).length;
  const merges = trainBpe(TRAINING_TEXT, MERGES);
  for (const [a, b] of merges) {
    if (vocab[a + b] === undefined) vocab[a + b] = Object.keys(vocab).length;
  }
  const addedToken = (content: string) => ({ content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });

  const tokenizer = {
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((t, id) => ({ id, ...addedToken(t) })),
    normalizer: null,
    pre_tokenizer: { type: "ByteLevel", add_prefix_space: false, trim_offsets: true, use_regex: true },
    post_processor: { type: "ByteLevel", add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: "ByteLevel", add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: "BPE",
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges,
    },
  };

  const config = {
    add_prefix_space: false,
    added_tokens_decoder: Object.fromEntries(SPECIAL_TOKENS.map((t, id) => [String(id), addedToken(t)])),
    bos_token: null,
    chat_template: CHAT_TEMPLATE,
    clean_up_tokenization_spaces: false,
    eos_token: "<|im_end|>",
    extra_special_tokens: {},
    model_max_length: 2048,
    pad_token: "<|endoftext|>",
    tokenizer_class: "PreTrainedTokenizerFast",
    unk_token: null,
  };

  const specialTokensMap = { eos_token: "<|im_end|>", pad_token: "<|endoftext|>" };

  return {
    "tokenizer.json": JSON.stringify(tokenizer, null, 2) + "\n",
    "tokenizer_config.json": JSON.stringify(config, null, 2) + "\n",
    "special_tokens_map.json": JSON.stringify(specialTokensMap, null, 2) + "\n",
  };
}
