// report_to "tensorboard": TensorBoard event files as transformers' TensorBoardCallback writes them through
// torch.utils.tensorboard.SummaryWriter — the same directory (output_dir/runs/<Mon DD_HH-MM-SS>_<host>, or
// $TENSORBOARD_LOGGING_DIR, or transformers 4's logging_dir), the same file name
// (events.out.tfevents.<secs>.<host>.<pid>.<uid>), the same records and the same tags (train/loss,
// train/grad_norm, …, eval/loss, …, and the run's arguments as the text "args").
//
// An event file is a sequence of TFRecords, each: u64 length (little-endian), u32 masked CRC32C of those 8
// bytes, the data, u32 masked CRC32C of the data. Each record's data is an Event protobuf; the first one
// holds only file_version "brain.Event:2", and every scalar after it is an Event {wall_time, step, summary:
// {value: [{tag, simple_value}]}} — torch's add_scalar writes the old-style simple_value (a float32), one
// Event per scalar. Under Deno and Node the file grows on disk as TensorBoard expects (appended at each
// flush, which TensorBoard's reader follows live); in a browser the bytes stay in memory (files()).
import { trainingArgsJSON, type ResolvedSFTConfig } from "./config.ts";
import { fs, hasFilesystem } from "../io/fs.ts";

// ---------------------------------------------------------------------------------------------------------
// CRC32C and TFRecord framing

const CRC32C_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1; // Castagnoli, reflected
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32C (Castagnoli) of `bytes`, as TFRecord uses it. crc32c("123456789") = 0xe3069283. */
export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotate right by 15 bits, add 0xa282ead8 (mod 2³²). */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord: length, its masked CRC, the data, the data's masked CRC. */
export function tfRecord(data: Uint8Array): Uint8Array {
  const out = new Uint8Array(8 + 4 + data.length + 4);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(data.length), true);
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true);
  out.set(data, 12);
  view.setUint32(12 + data.length, maskedCrc32c(data), true);
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// The protobuf messages (tensorboard/compat/proto: event.proto, summary.proto, tensor.proto), written in
// field-number order as protobuf's own serializer writes them.

const utf8 = new TextEncoder();

/** A protobuf message under construction: fields appended in the order written. */
class Proto {
  private readonly parts: number[] = [];
  private varint(v: number | bigint): void {
    let x = BigInt.asUintN(64, BigInt(v));
    while (x >= 0x80n) {
      this.parts.push(Number(x & 0x7fn) | 0x80);
      x >>= 7n;
    }
    this.parts.push(Number(x));
  }
  private key(field: number, wire: number): void {
    this.varint((field << 3) | wire);
  }
  int(field: number, v: number): this {
    this.key(field, 0);
    this.varint(v);
    return this;
  }
  double(field: number, v: number): this {
    this.key(field, 1);
    const b = new Uint8Array(8);
    new DataView(b.buffer).setFloat64(0, v, true);
    this.parts.push(...b);
    return this;
  }
  float(field: number, v: number): this {
    this.key(field, 5);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, v, true);
    this.parts.push(...b);
    return this;
  }
  bytes(field: number, v: Uint8Array | string | Proto): this {
    const b = typeof v === "string" ? utf8.encode(v) : v instanceof Proto ? v.finish() : v;
    this.key(field, 2);
    this.varint(b.length);
    for (const x of b) this.parts.push(x);
    return this;
  }
  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** Event {wall_time: 1, step: 2, file_version: 3, summary: 5, source_metadata: 10}; a zero step is left out (proto3). */
function event(wallTime: number, step: number | null, what: (e: Proto) => void): Uint8Array {
  const e = new Proto().double(1, wallTime);
  if (step) e.int(2, step);
  what(e);
  return e.finish();
}

/** The first record of every file, as tensorboard's EventFileWriter writes it. */
export function fileVersionEvent(wallTime: number): Uint8Array {
  return event(wallTime, null, (e) => e.bytes(3, "brain.Event:2").bytes(10, new Proto().bytes(1, "tensorboard.summary.writer.event_file_writer")));
}

/** torch's add_scalar: Summary {value: [Value {tag: 1, simple_value: 2 (float32)}]}. */
export function scalarEvent(tag: string, value: number, step: number | null, wallTime: number): Uint8Array {
  const v = new Proto().bytes(1, tag).float(2, value);
  return event(wallTime, step, (e) => e.bytes(5, new Proto().bytes(1, v)));
}

/**
 * torch's add_text: Value {tag: "<tag>/text_summary", tensor: 8 (TensorProto {dtype: DT_STRING (7), tensor_shape:
 * {dim: [{size: 1}]}, string_val: [text]}), metadata: 9 (SummaryMetadata {plugin_data: {plugin_name: "text"}})}.
 */
export function textEvent(tag: string, text: string, step: number | null, wallTime: number): Uint8Array {
  const tensor = new Proto().int(1, 7).bytes(2, new Proto().bytes(2, new Proto().int(1, 1))).bytes(8, text);
  const metadata = new Proto().bytes(1, new Proto().bytes(1, "text"));
  const v = new Proto().bytes(1, `${tag}/text_summary`).bytes(8, tensor).bytes(9, metadata);
  return event(wallTime, step, (e) => e.bytes(5, new Proto().bytes(1, v)));
}

// ---------------------------------------------------------------------------------------------------------
// The host: its name, process id and environment (Deno and Node; a browser has none of them).

type HostGlobals = {
  Deno?: { pid: number; hostname(): string; env: { get(k: string): string | undefined } };
  process?: { pid: number; env: Record<string, string | undefined>; versions?: { node?: string } };
};
const host = globalThis as unknown as HostGlobals;

/** socket.gethostname(): the machine's name under Deno and Node, "localhost" in a browser. */
async function hostname(): Promise<string> {
  try {
    if (host.Deno) return host.Deno.hostname();
    if (host.process?.versions?.node) {
      const spec = "node:os";
      return ((await import(/* @vite-ignore */ spec)) as { hostname(): string }).hostname();
    }
  } catch {
    // No permission to read it (Deno without --allow-sys): as in a browser.
  }
  return "localhost";
}

function env(name: string): string | undefined {
  try {
    return host.Deno ? host.Deno.env.get(name) : host.process?.env[name];
  } catch {
    return undefined; // Deno without --allow-env
  }
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** transformers' default_logdir (torch's too): runs/<Mon DD_HH-MM-SS>_<host>, in local time. */
export function default_logdir(now: Date, hostName: string): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `runs/${MONTHS[now.getMonth()]}${p(now.getDate())}_${p(now.getHours())}-${p(now.getMinutes())}-${p(now.getSeconds())}_${hostName}`;
}

/** transformers' rewrite_logs: eval_x → eval/x, test_x → test/x, anything else → train/x. */
export function rewrite_logs(logs: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(logs)) {
    out[k.startsWith("eval_") ? `eval/${k.slice(5)}` : k.startsWith("test_") ? `test/${k.slice(5)}` : `train/${k}`] = v;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// SummaryWriter

/** An event file: its directory and name, and its bytes so far. */
export interface TensorBoardFile {
  /** The file name, events.out.tfevents.<secs>.<host>.<pid>.<uid>. */
  name: string;
  /** The directory it is written to (logging_dir). */
  dir: string;
  bytes: Uint8Array;
}

export interface SummaryWriterOptions {
  /** Seconds since the epoch, for wall_time and the file name (default: Date.now() / 1000). */
  now?: () => number;
  /** The host name in the file name (default: this machine's). */
  host?: string;
  /** The process id in the file name (default: this process's; 0 in a browser). */
  pid?: number;
  /** Write the file to disk (default: where there is a filesystem, Deno and Node); in memory either way. */
  filesystem?: boolean;
}

let globalUid = 0;

/** torch.utils.tensorboard.SummaryWriter's scalar and text events, to one event file in `log_dir`. */
export class SummaryWriter {
  readonly log_dir: string;
  readonly file: TensorBoardFile;
  private readonly now: () => number;
  private readonly filesystem: boolean;
  private readonly chunks: Uint8Array[] = [];
  /** Records not yet appended to the file on disk. */
  private pending: Uint8Array[] = [];
  private opened = false;

  private constructor(log_dir: string, name: string, options: SummaryWriterOptions) {
    this.log_dir = log_dir;
    this.now = options.now ?? (() => Date.now() / 1000);
    this.filesystem = options.filesystem ?? hasFilesystem();
    this.file = { name, dir: log_dir, bytes: new Uint8Array(0) };
    this.add(fileVersionEvent(this.now()));
  }

  /** A writer of a new file in `log_dir` (created on the first flush). */
  static async create(log_dir: string, options: SummaryWriterOptions = {}): Promise<SummaryWriter> {
    const now = options.now ?? (() => Date.now() / 1000);
    const name = `events.out.tfevents.${String(Math.floor(now())).padStart(10, "0")}.${options.host ?? (await hostname())}.${options.pid ?? host.Deno?.pid ?? host.process?.pid ?? 0}.${globalUid++}`;
    return new SummaryWriter(log_dir, name, { ...options, now });
  }

  private add(data: Uint8Array): void {
    const record = tfRecord(data);
    this.chunks.push(record);
    this.pending.push(record);
  }

  /** add_scalar(tag, value, global_step): one Event with the value as a float32 simple_value. */
  add_scalar(tag: string, value: number, global_step: number | null = null, walltime: number = this.now()): void {
    this.add(scalarEvent(tag, value, global_step, walltime));
  }

  /** add_text(tag, text, global_step): the text plugin's tensor, under "<tag>/text_summary". */
  add_text(tag: string, text: string, global_step: number | null = null, walltime: number = this.now()): void {
    this.add(textEvent(tag, text, global_step, walltime));
  }

  /** The file's bytes so far. */
  bytes(): Uint8Array {
    const total = this.chunks.reduce((n, c) => n + c.length, 0);
    if (this.file.bytes.length !== total) {
      const out = new Uint8Array(total);
      let at = 0;
      for (const c of this.chunks) {
        out.set(c, at);
        at += c.length;
      }
      this.file.bytes = out;
    }
    return this.file.bytes;
  }

  /** Appends what was added since the last flush to the file on disk (creating log_dir first). */
  async flush(): Promise<void> {
    this.bytes();
    if (!this.filesystem || !this.pending.length) return;
    const data = this.pending;
    this.pending = [];
    const f = await fs();
    const path = `${this.log_dir}/${this.file.name}`;
    try {
      if (!this.opened) await f.mkdir(this.log_dir, { recursive: true });
      for (const d of data) await f.appendFile(path, d);
      this.opened = true;
    } catch (e) {
      throw new Error(`report_to "tensorboard": cannot write ${path}: ${(e as Error).message} (set logging_dir or TENSORBOARD_LOGGING_DIR to a writable directory)`, { cause: e });
    }
  }

  async close(): Promise<void> {
    await this.flush();
  }
}

// ---------------------------------------------------------------------------------------------------------
// TensorBoardCallback

/** What the callback reads of the trainer's state (TrainerState's keys). */
interface StateLike {
  global_step: number;
  is_world_process_zero: boolean;
  log_history: Record<string, number>[];
}

export interface TensorBoardCallbackOptions extends SummaryWriterOptions {
  /** The model's config.json, written as the text "model_config" at the start, as transformers does. */
  model_config?: () => Record<string, unknown> | null | undefined;
  /** The start time that names the default directory (default: when training begins). */
  date?: () => Date;
}

/**
 * transformers' TensorBoardCallback: on_train_begin opens a writer in logging_dir and writes the arguments
 * (and the model's config) as text; on_log writes each numeric log as a scalar at state.global_step, its key
 * rewritten by rewrite_logs (loss → train/loss, eval_loss → eval/loss); on_train_end closes the file.
 * webtune's trainer hands evaluation metrics to on_evaluate and pushes the final train metrics to log_history
 * without on_log, so this callback writes those from on_evaluate and on_train_end (transformers writes both
 * through on_log, to the same tags).
 */
export class TensorBoardCallback {
  /** The directory the events go to, known once training begins. */
  logging_dir: string | null = null;
  private writer: SummaryWriter | null = null;
  private readonly done: TensorBoardFile[] = [];
  private readonly options: TensorBoardCallbackOptions;

  constructor(options: TensorBoardCallbackOptions = {}) {
    this.options = options;
  }

  /** Every event file written so far (one per train() call), with its bytes. */
  files(): TensorBoardFile[] {
    const all = [...this.done];
    if (this.writer) all.push({ ...this.writer.file, bytes: this.writer.bytes() });
    return all;
  }

  /** The directory, as transformers picks it: TENSORBOARD_LOGGING_DIR, else output_dir/runs/<date>_<host>; logging_dir first (transformers 4). */
  private async directory(args: ResolvedSFTConfig): Promise<string> {
    const given = args.logging_dir ?? env("TENSORBOARD_LOGGING_DIR") ?? null;
    if (given) return given.replace(/^~(?=$|[\\/])/, env("HOME") ?? env("USERPROFILE") ?? "~");
    const date = this.options.date?.() ?? new Date();
    return `${args.output_dir.replace(/[\\/]+$/, "")}/${default_logdir(date, this.options.host ?? (await hostname()))}`;
  }

  async on_train_begin(args: ResolvedSFTConfig, state: StateLike): Promise<void> {
    if (!state.is_world_process_zero) return;
    if (this.writer) await this.close();
    this.logging_dir = await this.directory(args);
    this.writer = await SummaryWriter.create(this.logging_dir, this.options);
    // TrainingArguments.to_json_string(): the arguments indented by 2, every *_token value replaced by its name
    // ("<HUB_TOKEN>"), so that no token reaches the file.
    this.writer.add_text("args", JSON.stringify(trainingArgsJSON(args), null, 2));
    const config = this.options.model_config?.();
    // PretrainedConfig.to_json_string(): sorted keys, indented by 2, a final newline.
    if (config) this.writer.add_text("model_config", `${JSON.stringify(Object.fromEntries(Object.keys(config).sort().map((k) => [k, config[k]])), null, 2)}\n`);
    await this.writer.flush();
  }

  private async write(state: StateLike, logs: Record<string, number>): Promise<void> {
    if (!state.is_world_process_zero || !this.writer) return;
    for (const [tag, v] of Object.entries(rewrite_logs(logs))) {
      if (typeof v === "number") this.writer.add_scalar(tag, v, state.global_step);
    }
    await this.writer.flush();
  }

  async on_log(_args: ResolvedSFTConfig, state: StateLike, _control: unknown, logs: Record<string, number>): Promise<void> {
    // The trainer's logs carry the step; transformers' on_log gets them without it (log_history has it).
    const { step: _, ...rest } = logs;
    await this.write(state, rest);
  }

  async on_evaluate(_args: ResolvedSFTConfig, state: StateLike, _control: unknown, metrics: Record<string, number>): Promise<void> {
    await this.write(state, metrics);
  }

  async on_train_end(_args: ResolvedSFTConfig, state: StateLike): Promise<void> {
    const last = state.log_history[state.log_history.length - 1];
    if (last && "train_loss" in last) {
      const { step: _, ...metrics } = last;
      await this.write(state, metrics);
    }
    await this.close();
  }

  private async close(): Promise<void> {
    if (!this.writer) return;
    await this.writer.close();
    this.done.push({ ...this.writer.file, bytes: this.writer.bytes() });
    this.writer = null;
  }
}
