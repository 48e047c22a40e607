// Where training rows come from, streamed one at a time so a dataset larger than memory works: arrays, any
// (async) iterable, JSON Lines / JSON / Parquet / CSV / text files given as a local path (Deno/Node), a URL, a
// browser File / Blob, or an opened file (a ByteFile and its name: hub_datasets.ts hands Hub files over so), and
// lists of those (shards, e.g. a Hub dataset's refs/convert/parquet files). Hub datasets by name: hub_datasets.ts.
//
// loadDataset(source) returns a Dataset: async-iterable, re-iterable (one pass per epoch reads the source
// again), with skip(n) for resuming (Parquet skips whole row groups; JSON Lines skips lines without parsing them).
//
// JSON Lines is read in chunks (options.chunk_size bytes) and split on newlines in linear time; the whole file is
// never held, and a line longer than options.max_line_bytes (default 128 MiB) is an error naming file:line, raised
// before more of it is read (through gzip too). Every reader is strict UTF-8: a bad byte is an error naming
// file:line and its offset.
// Blank lines are skipped, as Hugging Face datasets' JSON loader skips them; a line that is not valid JSON, or
// not a JSON object, is an error naming the file and the line, never a silent skip. A ".gz" name is
// decompressed on the fly (DecompressionStream). A JSON file must hold an array of rows (or, with
// options.field, an object whose `field` is one); a ".json" file that is really JSON Lines is read as such.
// Parquet goes through hyparquet one row group at a time, with ranged reads (HTTP Range for URLs); int64 values
// become numbers. CSV (.csv, .tsv) and text (.txt) files are read as datasets' csv and text builders read them
// (csv_text.ts). The bytes come through src/io (openFile: a local file, a Blob, or HTTP with the Hub's hints).
import type { FetchLike } from "../io/http.ts";
import { isFileLocation, openFile, type FileLocation, type OpenedFile } from "../io/open.ts";
import { csvRows, lineTooLong, notUtf8, partialTail, textRows, type CsvOptions, type TextOptions } from "./csv_text.ts";

/** One row of a dataset: a JSON object. */
export type Row = Record<string, unknown>;

/** Where each row came from ("data.jsonl:12", "train.parquet row 7"), on a non-enumerable symbol key. */
export const ROW_SOURCE: unique symbol = Symbol.for("webtune.row_source") as never;

/** The location ROW_SOURCE holds for a row, if any. */
export function rowSource(row: unknown): string | undefined {
  return row && typeof row === "object" ? ((row as { [ROW_SOURCE]?: string })[ROW_SOURCE] ?? undefined) : undefined;
}

function tagRow(row: Row, where: string): Row {
  Object.defineProperty(row, ROW_SOURCE, { value: where, enumerable: false, configurable: true });
  return row;
}

/** A file format a source can be read as (datasets' builder names, "jsonl" aside: "json" reads both). */
export type DataFormat = "jsonl" | "json" | "parquet" | "csv" | "text";

/** An opened file: its bytes (ranged reads, a stream) and its name for messages and format detection. */
export type DataFile = OpenedFile;

/** Whether `x` is an opened file ({name, bytes: ByteFile}). */
export function isDataFile(x: unknown): x is DataFile {
  const f = x as Partial<DataFile> | null;
  return typeof f === "object" && f !== null && typeof f.name === "string" && typeof f.bytes?.read === "function" && typeof f.bytes?.stream === "function";
}

/** Everything loadDataset takes. */
export type DatasetSource =
  | Dataset
  | readonly Row[]
  | Iterable<Row>
  | AsyncIterable<Row>
  | (() => Iterable<Row> | AsyncIterable<Row>)
  | FileLocation
  | DataFile
  | readonly (FileLocation | DataFile)[];

export interface LoadDatasetOptions extends CsvOptions, TextOptions {
  /**
   * How to read files: default from the name's extension (.jsonl/.ndjson, .json, .parquet, .csv, .tsv, .txt, each
   * optionally .gz), else by sniffing the first bytes (Parquet, JSON or JSON Lines; CSV and text are never guessed).
   */
  format?: DataFormat;
  /** Bytes read at a time from a file, a Blob or a response body (default 1 MiB). */
  chunk_size?: number;
  /**
   * The longest line read, in bytes (default DEFAULT_MAX_LINE_BYTES, 128 MiB): a JSON Lines line, a CSV record or a
   * text row (a paragraph or the whole document with sample_by) past it is an error naming the file and the line,
   * raised as soon as that many bytes of it are read (a small .gz holding a huge line fails fast). CSV and text count
   * decoded characters, which are never more than the bytes. A JSON (array) file is read whole and is not limited.
   */
  max_line_bytes?: number;
  /** For a JSON file holding an object: the key whose array holds the rows (as datasets' `field`). */
  field?: string;
  /** Parquet: the columns to read (default all). */
  columns?: string[];
  /** Sent as `Authorization: Bearer <token>` with URL requests (private or gated Hub datasets). */
  token?: string;
  /** Extra request headers for URLs. */
  headers?: Record<string, string>;
  /** The fetch to use for URLs (default the global fetch). */
  fetch?: FetchLike;
  /** The name used in messages (default: the path, URL or file name). */
  name?: string;
}

const DEFAULT_CHUNK = 1 << 20;

/** Opens a fresh pass over the rows, starting after the first `skip` of them. */
type Opener = (skip: number) => AsyncIterable<Row>;

/**
 * Rows, as an async iterable that can be iterated again (each pass reads the source from its start) and
 * skipped into. `num_rows` is known for arrays and Parquet files, else null.
 */
export class Dataset implements AsyncIterable<Row> {
  constructor(
    private readonly opener: Opener,
    /** What the rows come from, for messages. */
    readonly name: string,
    private readonly offset = 0,
    private readonly total: number | null = null,
    private readonly counter: (() => Promise<number | null>) | null = null,
    private readonly held: readonly unknown[] | null = null,
  ) {}

  /**
   * Whether the rows are held in memory (a dataset made from an array, as `datasets` holds a non-streaming
   * Dataset): the trainer then shuffles it each epoch as it does an array, rather than streaming it in order.
   */
  get inMemory(): boolean {
    return this.held !== null;
  }

  /** The row count (after skip) when it costs no pass over the rows (arrays, Parquet footers); else null. */
  async countIfCheap(): Promise<number | null> {
    const n = this.total ?? (this.counter ? await this.counter() : null);
    return n === null ? null : Math.max(0, n - this.offset);
  }

  /** The number of rows (after skip), where known without reading them all: arrays and Parquet files; else null. */
  get num_rows(): number | null {
    return this.total === null ? null : Math.max(0, this.total - this.offset);
  }

  [Symbol.asyncIterator](): AsyncIterator<Row> {
    return this.opener(this.offset)[Symbol.asyncIterator]();
  }

  /** The rows after the first `n` (for resuming); files skip without parsing where they can. */
  skip(n: number): Dataset {
    if (!Number.isSafeInteger(n) || n < 0) throw new Error(`Dataset.skip: n must be a non-negative integer, got ${n}`);
    return new Dataset(this.opener, this.name, this.offset + n, this.total, this.counter, this.held);
  }

  /** The first row, or undefined for an empty dataset. */
  async first(): Promise<Row | undefined> {
    for await (const row of this) return row;
    return undefined;
  }

  /** All rows in an array (small datasets and tests). */
  async toArray(): Promise<Row[]> {
    const out: Row[] = [];
    for await (const row of this) out.push(row);
    return out;
  }
}

/** A row checked to be a plain object. */
function asRow(value: unknown, where: string): Row {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`${where}: a row must be a JSON object, got ${describe(value)}`);
  }
  return value as Row;
}

/** "an array", "a string", "null", … */
export function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return "an object";
  const t = typeof value;
  return t === "undefined" ? "undefined" : `${/^[aeiou]/.test(t) ? "an" : "a"} ${t}`;
}

/** Rows from anything loadDataset takes, as a re-iterable Dataset. */
export function loadDataset(source: DatasetSource, options: LoadDatasetOptions = {}): Dataset {
  if (source instanceof Dataset) return source;
  if (isFileLocation(source) || isDataFile(source)) return fileDataset(source, options);
  if (Array.isArray(source)) {
    if (source.length > 0 && source.every((f) => isFileLocation(f) || isDataFile(f))) return shardsDataset(source as (FileLocation | DataFile)[], options);
    const rows = source as readonly Row[];
    const name = options.name ?? `an array of ${rows.length} rows`;
    return new Dataset(
      (skip) =>
        (async function* () {
          for (let i = skip; i < rows.length; i++) yield asRow(rows[i], `row ${i} of ${name}`);
        })(),
      name,
      0,
      rows.length,
      null,
      rows,
    );
  }
  if (typeof source === "function") {
    const make = source as () => Iterable<Row> | AsyncIterable<Row>;
    const name = options.name ?? "the rows of a function";
    return new Dataset((skip) => iterate(make(), skip, name), name);
  }
  if (source && typeof source === "object" && (Symbol.asyncIterator in source || Symbol.iterator in source)) {
    const it = source as Iterable<Row> | AsyncIterable<Row>;
    const name = options.name ?? "an iterable";
    // A generator (an iterator that is its own iterable) can be read once; a second pass would be empty.
    const once = typeof (it as { next?: unknown }).next === "function";
    let used = false;
    return new Dataset((skip) => {
      if (once && used) {
        throw new Error(
          `${name} is an iterator (e.g. a generator), which can be read only once, so a second pass (another epoch) ` +
            `would see no rows. Pass an array, a file, or a function that returns a fresh iterable: loadDataset(() => gen())`,
        );
      }
      used = true;
      return iterate(it, skip, name);
    }, name);
  }
  throw new Error(
    `loadDataset: cannot read ${describe(source)} as a dataset. Give an array of row objects, an (async) iterable of them, ` +
      `a function returning one, a path or URL of a .jsonl / .json / .parquet / .csv / .txt file, a File or Blob, or a list of files`,
  );
}

async function* iterate(it: Iterable<Row> | AsyncIterable<Row>, skip: number, name: string): AsyncGenerator<Row> {
  let i = 0;
  for await (const row of it as AsyncIterable<Row>) {
    if (i >= skip) yield asRow(row, `row ${i} of ${name}`);
    i++;
  }
}

/** Several files read one after the other; skip passes over whole Parquet files by their footers' row counts. */
function shardsDataset(files: (FileLocation | DataFile)[], options: LoadDatasetOptions): Dataset {
  const parts = files.map((f) => fileDataset(f, { ...options, name: undefined }));
  return concatenate(parts, options.name ?? `${files.length} files (${parts[0]!.name}, …)`);
}

/** Datasets one after the other (datasets.concatenate_datasets); skip passes over parts that know their length. */
export function concatenate(parts: Dataset[], name: string): Dataset {
  return new Dataset(
    (skip) =>
      (async function* () {
        let left = skip;
        for (const part of parts) {
          if (left > 0) {
            const n = await part.countIfCheap();
            if (n !== null && n <= left) {
              left -= n;
              continue;
            }
            if (n !== null) {
              yield* part.skip(left);
              left = 0;
              continue;
            }
          }
          for await (const row of part) {
            if (left > 0) left--;
            else yield row;
          }
        }
      })(),
    name,
    0,
    parts.every((p) => p.num_rows !== null) ? parts.reduce((t, p) => t + p.num_rows!, 0) : null,
  );
}

// ---------------------------------------------------------------------------------------------------------
// Files: the bytes of a path, a URL or a Blob, read through src/io.

/** Chunks from the start, decompressed when the file's name ends in .gz. */
function chunks(file: OpenedFile, chunkSize: number): AsyncIterable<Uint8Array> {
  return maybeGunzip(file.name, file.bytes.stream(chunkSize));
}

/** Random access for Parquet (hyparquet's AsyncBuffer). */
async function random(file: OpenedFile): Promise<{ byteLength: number; slice(start: number, end?: number): Promise<ArrayBuffer> }> {
  const size = await file.bytes.size();
  return {
    byteLength: size,
    async slice(start: number, end?: number) {
      const b = await file.bytes.read(start, end ?? size);
      return (b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? b.buffer : b.slice().buffer) as ArrayBuffer;
    },
  };
}

/** Compressed bytes handed to the decompressor at a time (see maybeGunzip). */
const GZIP_SLICE = 8192;

/** Decompresses a ".gz" file's chunks (DecompressionStream: browsers, Deno, Node 18+). */
function maybeGunzip(name: string, chunks: AsyncIterable<Uint8Array>): AsyncIterable<Uint8Array> {
  if (!/\.gz$/i.test(stripQuery(name))) return chunks;
  return {
    async *[Symbol.asyncIterator]() {
      if (typeof DecompressionStream === "undefined") throw new Error(`${name}: this host has no DecompressionStream to read .gz files with`);
      const it = chunks[Symbol.asyncIterator]();
      // Compressed bytes go in GZIP_SLICE at a time: gzip expands up to ~1000x, and some hosts (Deno) decompress a
      // whole written chunk at once, so a small slice bounds how far decompression runs ahead of the reader (a
      // line past max_line_bytes stops it within ~GZIP_SLICE × 1000 bytes).
      let rest: Uint8Array | null = null;
      const input = new ReadableStream<Uint8Array>({
        async pull(controller) {
          if (!rest) {
            const { done, value } = await it.next();
            if (done) return controller.close();
            rest = value;
          }
          controller.enqueue(rest.subarray(0, GZIP_SLICE));
          rest = rest.length > GZIP_SLICE ? rest.subarray(GZIP_SLICE) : null;
        },
        async cancel() {
          await it.return?.();
        },
      });
      const reader = input.pipeThrough(new DecompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>).getReader();
      let finished = false;
      try {
        for (;;) {
          let step: ReadableStreamReadResult<Uint8Array>;
          try {
            step = await reader.read();
          } catch (e) {
            finished = true;
            throw new Error(`${name}: gzip decompression failed: ${(e as Error).message}`, { cause: e });
          }
          if (step.done) {
            finished = true;
            return;
          }
          yield step.value;
        }
      } finally {
        // Stopped early (a reader's error, e.g. a line past max_line_bytes): decompress no further, close the file.
        if (!finished) await reader.cancel().catch(() => {});
        reader.releaseLock();
      }
    },
  };
}

function stripQuery(name: string): string {
  return name.replace(/[?#].*$/, "");
}

/** The format a name's extension says, or null. */
function formatOf(name: string): DataFormat | null {
  const n = stripQuery(name).toLowerCase().replace(/\.gz$/, "");
  if (n.endsWith(".jsonl") || n.endsWith(".ndjson")) return "jsonl";
  if (n.endsWith(".json")) return "json";
  if (n.endsWith(".parquet")) return "parquet";
  if (n.endsWith(".csv") || n.endsWith(".tsv")) return "csv";
  if (n.endsWith(".txt")) return "text";
  return null;
}

/** The format from the first bytes: "PAR1" Parquet, "[" JSON, else JSON Lines. */
function sniff(head: Uint8Array): DataFormat {
  if (head.length >= 4 && head[0] === 0x50 && head[1] === 0x41 && head[2] === 0x52 && head[3] === 0x31) return "parquet";
  const text = new TextDecoder().decode(head).replace(/^\uFEFF/, "").trimStart();
  return text.startsWith("[") ? "json" : "jsonl";
}

/** The rows of one file. */
function fileDataset(source: FileLocation | DataFile, options: LoadDatasetOptions): Dataset {
  const opened = isDataFile(source) ? source : openFile(source, { token: options.token, headers: options.headers, fetch: options.fetch }, "dataset");
  const name = options.name ?? opened.name;
  // A Blob has no path: its given name (a ".gz" one included) stands for it.
  const file: OpenedFile = typeof Blob !== "undefined" && source instanceof Blob ? { name, bytes: opened.bytes } : opened;
  const chunkSize = options.chunk_size ?? DEFAULT_CHUNK;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) throw new Error(`loadDataset: chunk_size must be a positive integer, got ${chunkSize}`);
  const maxLine = maxLineBytes(options.max_line_bytes);
  const rawName = isDataFile(source) ? source.name : typeof source === "string" ? source : source instanceof URL ? source.href : ((source as File).name ?? "");
  // A .tsv file is CSV separated by tabs (datasets: {".tsv": ("csv", {"sep": "\t"})}).
  const sep = options.sep ?? (/\.tsv(\.gz)?$/i.test(stripQuery(rawName)) ? "\t" : undefined);
  let format: Promise<DataFormat> | null = null;
  const getFormat = () =>
    (format ??= (async () => {
      if (options.format) return options.format;
      const byName = formatOf(rawName);
      if (byName) return byName;
      if (/\.gz$/i.test(stripQuery(rawName))) {
        for await (const c of chunks(file, 64)) return sniff(c);
        return "jsonl";
      }
      return sniff(await file.bytes.head(64));
    })());
  let parquetRows: Promise<number> | null = null;
  // Parquet files know their row count from the footer: shards are skipped over without reading them.
  const counter = async () => {
    if ((await getFormat()) !== "parquet") return null;
    parquetRows ??= parquetMeta(file, name).then(({ metadata }) => Number(metadata.num_rows));
    return parquetRows;
  };
  return new Dataset(
    (skip) =>
      (async function* () {
        const fmt = await getFormat();
        if (fmt === "parquet") yield* parquetRowsOf(file, name, skip, options);
        else if (fmt === "jsonl") yield* jsonLines(chunks(file, chunkSize), name, skip, maxLine);
        else if (fmt === "csv") yield* csvRows(chunks(file, chunkSize), name, skip, { sep, max_line_bytes: maxLine });
        else if (fmt === "text") yield* textRows(chunks(file, chunkSize), name, skip, { keep_linebreaks: options.keep_linebreaks, sample_by: options.sample_by, max_line_bytes: maxLine });
        else yield* jsonRows(file, name, skip, chunkSize, options.field, maxLine);
      })(),
    name,
    0,
    null,
    counter,
  );
}

// ---------------------------------------------------------------------------------------------------------
// JSON Lines and JSON.

/**
 * The longest line loadDataset reads by default (LoadDatasetOptions.max_line_bytes): 128 MiB. A longer line (a JSON
 * Lines row, a CSV record, a text row) is an error naming the file and the line, read no further than the limit.
 */
export const DEFAULT_MAX_LINE_BYTES = 128 * 1024 * 1024;

/** options.max_line_bytes checked (a positive integer), or the default. */
export function maxLineBytes(value: number | undefined): number {
  const v = value ?? DEFAULT_MAX_LINE_BYTES;
  if (!Number.isSafeInteger(v) || v < 1) throw new Error(`loadDataset: max_line_bytes must be a positive integer, got ${JSON.stringify(value)}`);
  return v;
}

/**
 * Rows of JSON Lines chunks: split on "\n" (a trailing "\r" dropped), blank lines skipped, errors at file:line.
 * Linear in the bytes: each chunk is searched once for newlines, the pieces of a line that spans chunks are joined
 * once, and a line past `maxLine` bytes fails as soon as that many have been read.
 */
export async function* jsonLines(chunks: AsyncIterable<Uint8Array>, name: string, skip = 0, maxLine = DEFAULT_MAX_LINE_BYTES): AsyncGenerator<Row> {
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let line = 0; // lines read so far
  let index = 0;
  let offset = 0; // the file offset of the first byte of `pending`
  let pending: Uint8Array[] = []; // the bytes of a line not yet ended
  let pendingBytes = 0;
  const emit = (text: string): Row | null => {
    line++;
    if (line === 1) text = text.replace(/^\uFEFF/, "");
    if (text.endsWith("\r")) text = text.slice(0, -1);
    if (text.trim() === "") return null;
    if (index++ < skip) return null;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      const shown = text.length > 80 ? `${text.slice(0, 80)}…` : text;
      throw new Error(`${name}:${line}: not valid JSON: ${(e as Error).message}. The line: ${shown}`);
    }
    if (value === null || typeof value !== "object" || Array.isArray(value)) {
      throw new Error(`${name}:${line}: a row must be a JSON object, got ${describe(value)}`);
    }
    return tagRow(value as Row, `${name}:${line}`);
  };
  /** The text of whole lines: `pending` and then `tail`, which ends just after a "\n" (or the file does). */
  const decodeLines = (tail: Uint8Array): string => {
    const bytes = pending.length === 0 ? tail : concatBytes([...pending, tail], pendingBytes + tail.length);
    try {
      return decoder.decode(bytes);
    } catch (e) {
      throw notUtf8(name, bytes, line + 1, offset, e);
    }
  };
  const take = (piece: Uint8Array) => {
    if (piece.length === 0) return;
    pending.push(piece);
    pendingBytes += piece.length;
    if (pendingBytes > maxLine) throw lineTooLong(name, line + 1, maxLine);
  };
  for await (const chunk of chunks) {
    const last = chunk.lastIndexOf(0x0a);
    if (last < 0) {
      take(chunk); // no line ends in this chunk
      continue;
    }
    // The first line of this chunk completes `pending`: its length is checked before anything is decoded.
    const firstNl = chunk.indexOf(0x0a);
    if (pendingBytes + firstNl > maxLine) throw lineTooLong(name, line + 1, maxLine);
    const head = chunk.subarray(0, last + 1);
    const consumed = pendingBytes + head.length;
    const text = decodeLines(head);
    pending = [];
    pendingBytes = 0;
    let from = 0;
    let nl: number;
    while ((nl = text.indexOf("\n", from)) >= 0) {
      if (nl - from > maxLine) throw lineTooLong(name, line + 1, maxLine);
      const row = emit(text.slice(from, nl));
      from = nl + 1;
      if (row) yield row;
    }
    offset += consumed;
    take(chunk.subarray(last + 1));
  }
  if (pendingBytes > 0) {
    const text = decodeLines(new Uint8Array(0));
    pending = [];
    const row = emit(text);
    if (row) yield row;
  }
}

/** `parts` (of `total` bytes) as one array. */
function concatBytes(parts: Uint8Array[], total: number): Uint8Array {
  if (parts.length === 1) return parts[0]!;
  const out = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Rows of a JSON file: an array of objects (or `field` of an object); a ".json" holding JSON Lines is read as such. */
async function* jsonRows(file: OpenedFile, name: string, skip: number, chunkSize: number, field: string | undefined, maxLine: number): AsyncGenerator<Row> {
  const start = new TextDecoder().decode(await file.bytes.head(1 << 16)).replace(/^\uFEFF/, "").trimStart();
  if (start.startsWith("{") && field === undefined) {
    // JSON Lines under a .json name (datasets reads those too): the first line is a whole object.
    const firstLine = start.split("\n", 1)[0].replace(/\r$/, "");
    let isLines = false;
    try {
      isLines = typeof JSON.parse(firstLine) === "object";
    } catch {
      isLines = false;
    }
    if (isLines) {
      yield* jsonLines(chunks(file, chunkSize), name, skip, maxLine);
      return;
    }
  }
  // Strict UTF-8, as JSON Lines: bytes that are not UTF-8 are an error naming the line and offset, never U+FFFD.
  const parts: string[] = [];
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let line = 1;
  let offset = 0;
  let tail: Uint8Array = new Uint8Array(0); // the bytes of a character split across chunks, for the error's line and offset
  try {
    for await (const c of chunks(file, chunkSize)) {
      let text: string;
      try {
        text = decoder.decode(c, { stream: true });
      } catch (e) {
        throw notUtf8(name, concatBytes([tail, c], tail.length + c.length), line, offset - tail.length, e);
      }
      parts.push(text);
      for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) line++;
      offset += c.length;
      tail = partialTail(c);
    }
    try {
      parts.push(decoder.decode());
    } catch (e) {
      throw new Error(`${name}:${line}: not UTF-8 text (the file ends inside a character, at byte offset ${offset}); save the file as UTF-8`, { cause: e });
    }
  } catch (e) {
    if (e instanceof RangeError) throw new Error(`${name}: too large to read as one JSON document (${(e as Error).message}); convert it to JSON Lines, which is read line by line`, { cause: e });
    throw e;
  }
  let value: unknown;
  try {
    value = JSON.parse(parts.join("").replace(/^\uFEFF/, ""));
  } catch (e) {
    if (e instanceof RangeError) throw new Error(`${name}: too large to read as one JSON document (${(e as Error).message}); convert it to JSON Lines, which is read line by line`, { cause: e });
    throw new Error(`${name} is not valid JSON: ${(e as Error).message}`);
  }
  if (field !== undefined) {
    if (!value || typeof value !== "object" || Array.isArray(value) || !Array.isArray((value as Row)[field])) {
      throw new Error(`${name}: field "${field}" was asked for, but the file is ${describe(value)}${value && typeof value === "object" && !Array.isArray(value) ? ` with keys ${Object.keys(value).join(", ")}` : ""}, not an object whose "${field}" is an array of rows`);
    }
    value = (value as Row)[field];
  }
  if (!Array.isArray(value)) {
    const keys = value && typeof value === "object" ? Object.keys(value as Row) : [];
    const arrays = keys.filter((k) => Array.isArray((value as Row)[k]));
    throw new Error(
      `${name}: a JSON dataset file must hold an array of rows ([{...}, {...}]), or be JSON Lines (one object per line); ` +
        `this one is ${describe(value)}${keys.length ? ` with keys ${keys.join(", ")}` : ""}` +
        (arrays.length ? `. To read the rows under one key, pass { field: "${arrays[0]}" }` : ""),
    );
  }
  for (let i = skip; i < value.length; i++) {
    const row = value[i];
    if (row === null || typeof row !== "object" || Array.isArray(row)) throw new Error(`${name}: element ${i}: a row must be a JSON object, got ${describe(row)}`);
    yield tagRow(row as Row, `${name} element ${i}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Parquet (hyparquet), one row group at a time.

type Hyparquet = typeof import("hyparquet");
let hyparquet: Promise<Hyparquet> | null = null;
function loadHyparquet(): Promise<Hyparquet> {
  return (hyparquet ??= import("hyparquet"));
}

async function parquetMeta(file: OpenedFile, name: string) {
  const hp = await loadHyparquet();
  const buffer = await random(file);
  try {
    const metadata = await hp.parquetMetadataAsync(buffer);
    return { hp, random: buffer, metadata };
  } catch (e) {
    throw new Error(`${name} is not a readable Parquet file: ${(e as Error).message}`, { cause: e });
  }
}

/** int64 (bigint) values as numbers, typed arrays as arrays, recursively: rows as JSON would give them. */
export function plainValue(v: unknown): unknown {
  if (typeof v === "bigint") {
    const n = Number(v);
    if (!Number.isSafeInteger(n)) throw new Error(`a 64-bit integer ${v} is beyond what a JavaScript number holds exactly`);
    return n;
  }
  if (Array.isArray(v)) return v.map(plainValue);
  if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
    if (v instanceof Uint8Array) return v;
    return Array.from(v as unknown as ArrayLike<number | bigint>, plainValue);
  }
  if (v && typeof v === "object" && Object.getPrototypeOf(v) === Object.prototype) {
    const out: Row = {};
    for (const [k, x] of Object.entries(v)) out[k] = plainValue(x);
    return out;
  }
  return v;
}

async function* parquetRowsOf(file: OpenedFile, name: string, skip: number, options: LoadDatasetOptions): AsyncGenerator<Row> {
  const { hp, random, metadata } = await parquetMeta(file, name);
  let groupStart = 0;
  for (const group of metadata.row_groups) {
    const n = Number(group.num_rows);
    const groupEnd = groupStart + n;
    if (groupEnd <= skip) {
      groupStart = groupEnd;
      continue;
    }
    const rowStart = Math.max(groupStart, skip);
    let rows: Record<string, unknown>[];
    try {
      rows = await hp.parquetReadObjects({ file: random, metadata, rowStart, rowEnd: groupEnd, columns: options.columns });
    } catch (e) {
      const msg = (e as Error).message;
      const hint = /compression|codec|unsupported/i.test(msg) ? " (webtune reads uncompressed and snappy Parquet; rewrite the file with snappy, as Hugging Face's refs/convert/parquet files are)" : "";
      throw new Error(`${name}: reading Parquet rows ${rowStart}-${groupEnd - 1} failed: ${msg}${hint}`, { cause: e });
    }
    for (let i = 0; i < rows.length; i++) {
      const row = plainValue(rows[i]) as Row;
      yield tagRow(row, `${name} row ${rowStart + i}`);
    }
    groupStart = groupEnd;
  }
}
