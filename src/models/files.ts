// Where a model's files come from: a local directory (Deno/Node), a URL base or a Hub model id, or browser
// File / FileSystemDirectoryHandle objects. Everything that reads model or tokenizer files goes through a
// ModelSource, so the loaders do not care which.
//
// Reads are ranged (`read(file, start, end)`), so the safetensors reader fetches one tensor at a time. Every
// source returns bytes the caller owns, except MemorySource, whose reads are views of the bytes it was given.

/** Read access to the files of one model directory (config.json, model.safetensors, tokenizer.json, …). */
export interface ModelSource {
  /** Where the files are, for messages: a path, a URL or a description. */
  readonly name: string;
  /** Whether `file` (a path relative to the model directory) exists. */
  exists(file: string): Promise<boolean>;
  /** The size of `file` in bytes; an error naming the file and the source when it does not exist. */
  size(file: string): Promise<number>;
  /** Bytes [start, end) of `file` (default the whole file); an error naming the file when it is missing or shorter. */
  read(file: string, start?: number, end?: number): Promise<Uint8Array>;
  /** `file` as UTF-8 text. */
  text(file: string): Promise<string>;
  /** `file` parsed as JSON; an error naming the file when it is not valid JSON. */
  json<T = unknown>(file: string): Promise<T>;
}

type Fs = typeof import("node:fs/promises");
let fsModule: Promise<Fs> | null = null;
/** node:fs/promises (Node and Deno); loaded through a variable so browser bundles do not include it. */
function fs(): Promise<Fs> {
  const spec = "node:fs/promises";
  return (fsModule ??= import(/* @vite-ignore */ spec) as Promise<Fs>);
}

function joinPath(dir: string, file: string): string {
  return dir.endsWith("/") ? dir + file : `${dir}/${file}`;
}

/** Common helpers over the three primitives. */
export abstract class BaseSource implements ModelSource {
  abstract readonly name: string;
  abstract exists(file: string): Promise<boolean>;
  abstract size(file: string): Promise<number>;
  abstract read(file: string, start?: number, end?: number): Promise<Uint8Array>;

  async text(file: string): Promise<string> {
    return new TextDecoder().decode(await this.read(file));
  }

  async json<T = unknown>(file: string): Promise<T> {
    const text = await this.text(file);
    try {
      return JSON.parse(text) as T;
    } catch (e) {
      throw new Error(`${file} in ${this.name} is not valid JSON: ${(e as Error).message}`);
    }
  }

  protected missing(file: string): Error {
    return new Error(`${file} not found in ${this.name}`);
  }
}

/** A directory on the local filesystem (Deno or Node). */
export class LocalDirectorySource extends BaseSource {
  constructor(readonly dir: string) {
    super();
  }

  get name(): string {
    return this.dir;
  }

  async exists(file: string): Promise<boolean> {
    try {
      return (await (await fs()).stat(joinPath(this.dir, file))).isFile();
    } catch {
      return false;
    }
  }

  async size(file: string): Promise<number> {
    try {
      return (await (await fs()).stat(joinPath(this.dir, file))).size;
    } catch {
      throw this.missing(file);
    }
  }

  async read(file: string, start = 0, end?: number): Promise<Uint8Array> {
    const f = await fs();
    let handle: Awaited<ReturnType<Fs["open"]>>;
    try {
      handle = await f.open(joinPath(this.dir, file), "r");
    } catch {
      throw this.missing(file);
    }
    try {
      const size = (await handle.stat()).size;
      const stop = end ?? size;
      if (start < 0 || stop < start || stop > size) {
        throw new Error(`${file} in ${this.dir}: bytes [${start}, ${stop}) asked for, but the file has ${size} bytes`);
      }
      const out = new Uint8Array(stop - start);
      let done = 0;
      while (done < out.length) {
        const { bytesRead } = await handle.read(out, done, out.length - done, start + done);
        if (bytesRead === 0) throw new Error(`${file} in ${this.dir}: the file ended after ${start + done} bytes`);
        done += bytesRead;
      }
      return out;
    } finally {
      await handle.close();
    }
  }
}

/** The bytes of some files held in memory (tests, or files a page already has). Reads are views, not copies. */
export class MemorySource extends BaseSource {
  constructor(
    readonly files: Record<string, Uint8Array>,
    readonly name = "in-memory files",
  ) {
    super();
  }

  private get(file: string): Uint8Array {
    const b = Object.hasOwn(this.files, file) ? this.files[file] : undefined;
    if (!b) throw this.missing(file);
    return b;
  }

  async exists(file: string): Promise<boolean> {
    return Object.hasOwn(this.files, file);
  }

  async size(file: string): Promise<number> {
    return this.get(file).length;
  }

  async read(file: string, start = 0, end?: number): Promise<Uint8Array> {
    const b = this.get(file);
    return b.subarray(...checkRange(file, this.name, start, end ?? b.length, b.length));
  }
}

/** [start, end) checked against a file of `size` bytes. */
function checkRange(file: string, where: string, start: number, end: number, size: number): [number, number] {
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start || end > size) {
    throw new Error(`${file} in ${where}: bytes [${start}, ${end}) asked for, but the file has ${size} bytes`);
  }
  return [start, end];
}

// ---------------------------------------------------------------------------------------------------------
// Browser objects: File lists (an <input type="file" webkitdirectory> or drag and drop) and directory handles
// (showDirectoryPicker()). Ranged reads are Blob slices, which browsers read from disk.

async function readBlob(blob: Blob, file: string, where: string, start: number, end: number | undefined): Promise<Uint8Array> {
  const [s, e] = checkRange(file, where, start, end ?? blob.size, blob.size);
  return new Uint8Array(await blob.slice(s, e).arrayBuffer());
}

/**
 * `File` objects; `file` "a/b.json" matches a File whose webkitRelativePath ends with "/a/b.json", or (for a
 * plain name) whose name is "b.json". When several match, the one nearest the top of the chosen folder wins.
 */
export class FileListSource extends BaseSource {
  readonly files: File[];
  readonly name: string;

  constructor(files: ArrayLike<File> | Iterable<File>) {
    super();
    this.files = Array.from(files as Iterable<File>);
    const root = this.files.map((f) => f.webkitRelativePath?.split("/")[0]).find((r) => r);
    this.name = root ? `the folder "${root}" (${this.files.length} files)` : `the ${this.files.length} files given`;
  }

  private find(file: string): File | undefined {
    const depth = (f: File) => (f.webkitRelativePath ? f.webkitRelativePath.split("/").length : 1);
    return this.files
      .filter((f) => {
        const rel = f.webkitRelativePath;
        return rel ? rel === file || rel.endsWith(`/${file}`) : f.name === file;
      })
      .sort((a, b) => depth(a) - depth(b))[0];
  }

  private get(file: string): File {
    const f = this.find(file);
    if (!f) throw this.missing(file);
    return f;
  }

  async exists(file: string): Promise<boolean> {
    return this.find(file) !== undefined;
  }

  async size(file: string): Promise<number> {
    return this.get(file).size;
  }

  async read(file: string, start = 0, end?: number): Promise<Uint8Array> {
    return readBlob(this.get(file), file, this.name, start, end);
  }
}

/** A FileSystemDirectoryHandle (the File System Access API); "a/b.json" walks into the subdirectory "a". */
export class DirectoryHandleSource extends BaseSource {
  private readonly cache = new Map<string, Promise<File | null>>();

  constructor(readonly handle: FileSystemDirectoryHandle) {
    super();
  }

  get name(): string {
    return `the folder "${this.handle.name}"`;
  }

  private find(file: string): Promise<File | null> {
    let p = this.cache.get(file);
    if (!p) {
      p = (async () => {
        const parts = file.split("/").filter((x) => x !== "" && x !== ".");
        let dir = this.handle;
        try {
          for (const d of parts.slice(0, -1)) dir = await dir.getDirectoryHandle(d);
          return await (await dir.getFileHandle(parts.at(-1) ?? "")).getFile();
        } catch (e) {
          if ((e as Error)?.name === "NotFoundError" || (e as Error)?.name === "TypeMismatchError" || (e as Error)?.name === "TypeError") return null;
          throw new Error(`reading ${file} in ${this.name} failed: ${(e as Error).message}`, { cause: e });
        }
      })();
      this.cache.set(file, p);
    }
    return p;
  }

  private async get(file: string): Promise<File> {
    const f = await this.find(file);
    if (!f) throw this.missing(file);
    return f;
  }

  async exists(file: string): Promise<boolean> {
    return (await this.find(file)) !== null;
  }

  async size(file: string): Promise<number> {
    return (await this.get(file)).size;
  }

  async read(file: string, start = 0, end?: number): Promise<Uint8Array> {
    return readBlob(await this.get(file), file, this.name, start, end);
  }
}

// ---------------------------------------------------------------------------------------------------------
// HTTP: a URL base or a Hugging Face Hub repository.

/** A download's progress, as transformers.js reports it: per file, bytes so far of `total`. */
export interface ProgressInfo {
  status: "progress" | "done";
  /** The source (a URL base or a Hub id). */
  name: string;
  file: string;
  loaded: number;
  /** The file's size in bytes (0 while unknown). */
  total: number;
  /** loaded / total in percent (0 while the total is unknown). */
  progress: number;
}

export type ProgressCallback = (info: ProgressInfo) => void;

/** The fetch webtune calls (the global fetch by default). */
export type FetchLike = (url: string, init?: RequestInit) => Promise<Response>;

/** Options of from_pretrained that choose and fetch files. */
export interface SourceOptions {
  /** A branch, tag or commit of a Hub repository (default "main"). */
  revision?: string;
  /** The Hub's address (default $HF_ENDPOINT where the environment is readable, else https://huggingface.co). */
  endpoint?: string;
  /**
   * A Hugging Face access token for private and gated models, sent as `Authorization: Bearer <token>` (to a
   * Hub repository: default $HF_TOKEN where the environment is readable).
   */
  token?: string;
  /** Called as files download: {status: "progress" | "done", file, loaded, total, …}. */
  progress_callback?: ProgressCallback;
  /**
   * Keep downloaded files in the Cache API (cache "webtune-models") and reuse them. Default: in a browser
   * (a `caches` global and no Deno/Node; Deno's `caches` is not used unless asked for). `false` never caches;
   * `true` caches wherever a `caches` global exists.
   */
  cache?: boolean;
  /** The fetch to use (default the global fetch). */
  fetch?: FetchLike;
}

export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";
export const CACHE_NAME = "webtune-models";

/** An environment variable where the host has one and lets it be read without prompting; else undefined. */
function env(name: string): string | undefined {
  const g = globalThis as { Deno?: any; process?: any };
  try {
    if (g.Deno?.env?.get) {
      if (g.Deno.permissions?.querySync?.({ name: "env", variable: name })?.state !== "granted") return undefined;
      return g.Deno.env.get(name) || undefined;
    }
    return g.process?.env?.[name] || undefined;
  } catch {
    return undefined;
  }
}

/** Whether `s` reads as a Hub model id "owner/name". */
export function isHubId(s: string): boolean {
  return /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/.test(s) && !s.includes("..") && !s.endsWith(".");
}

/** Per-file state of a remote file. */
interface Remote {
  size?: number;
  /** Whether the server answers Range requests with 206. */
  ranges?: boolean;
  /** The whole file, kept when the server ignores Range (downloaded once, read from memory after). */
  whole?: Promise<Uint8Array>;
  /** The file in the browser's Cache API, read as a disk-backed Blob. */
  blob?: Promise<Blob>;
  /** The byte ranges fetched so far (sorted, disjoint), their total, and whether "done" was reported. */
  got: [number, number][];
  loaded: number;
  done: boolean;
}

/**
 * Files under a URL base (`${base}/${file}`), read through fetch: ranged reads where the server honours
 * Range (206), else one download per file kept for later reads of it. In a browser, files are stored in and
 * read from the Cache API unless `cache: false`.
 */
export class HttpSource extends BaseSource {
  readonly name: string;
  private readonly files = new Map<string, Remote>();
  private readonly fetcher: FetchLike;
  private readonly token?: string;
  private readonly hub?: { id: string; revision: string; endpoint: string };

  constructor(
    readonly base: string,
    private readonly options: SourceOptions = {},
    hub?: { id: string; revision: string; endpoint: string },
  ) {
    super();
    this.base = base.replace(/\/+$/, "");
    this.hub = hub;
    this.name = hub ? `${hub.id}${hub.revision === "main" ? "" : `@${hub.revision}`}${hub.endpoint === DEFAULT_HUB_ENDPOINT ? "" : ` on ${hub.endpoint}`}` : this.base;
    this.token = options.token ?? (hub ? env("HF_TOKEN") : undefined);
    const f = options.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (!f) throw new Error(`${this.name}: no fetch in this host; pass one as the \`fetch\` option`);
    this.fetcher = options.fetch ? f : (url, init) => globalThis.fetch(url, init);
  }

  /** The URL of `file` (its path segments escaped). */
  url(file: string): string {
    return `${this.base}/${file.split("/").map(encodeURIComponent).join("/")}`;
  }

  private state(file: string): Remote {
    let s = this.files.get(file);
    if (!s) this.files.set(file, (s = { got: [], loaded: 0, done: false }));
    return s;
  }

  private useCache(): boolean {
    if (this.options.cache === false || typeof (globalThis as { caches?: unknown }).caches === "undefined") return false;
    return this.options.cache === true || !hasFilesystem();
  }

  private async request(file: string, method: "GET" | "HEAD", range?: [number, number]): Promise<Response> {
    const url = this.url(file);
    const headers: Record<string, string> = {};
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (range) headers.Range = `bytes=${range[0]}-${range[1] - 1}`;
    try {
      return await this.fetcher(url, { method, headers });
    } catch (e) {
      throw new Error(`fetching ${url} failed: ${(e as Error).message} (check the address and the network)`, { cause: e });
    }
  }

  /** The error for a failed response, saying what to check. */
  private httpError(file: string, res: Response): Error {
    const url = this.url(file);
    const code = res.headers.get("x-error-code");
    const what = `${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${code ? ` (${code})` : ""}`;
    const hub = this.hub;
    let hint: string;
    if (res.status === 401 || res.status === 403) {
      hint =
        code === "GatedRepo"
          ? `the model is gated: accept its terms on ${hub ? `${hub.endpoint}/${hub.id}` : "its page"} and pass an access token as the \`token\` option`
          : this.token
            ? `the token given was refused or has no access: check that it is valid, can read this repository, and (gated models) that its terms were accepted`
            : `the model may be private or gated (pass a Hugging Face access token as the \`token\` option; it is sent as Authorization: Bearer)${hub ? `, or the id "${hub.id}" may be wrong` : ""}`;
    } else if (res.status === 404) {
      hint = !hub
        ? `check the URL base ${this.base} and that ${file} is under it`
        : code === "RevisionNotFound"
          ? `there is no revision "${hub.revision}" in ${hub.id}: check the \`revision\` option`
          : code === "RepoNotFound"
            ? `there is no repository "${hub.id}": check the model id`
            : `check the model id "${hub.id}" and the revision "${hub.revision}"${code === "EntryNotFound" ? `; the repository has no ${file}` : ""}`;
    } else if (res.status === 429) {
      hint = "too many requests: wait and try again, or pass an access token as the `token` option";
    } else {
      hint = "the server failed; try again later";
    }
    return new Error(`${what}: ${hint}`);
  }

  /**
   * Notes that bytes [at, at + n) of `file` arrived and reports progress: `loaded` counts the bytes of the
   * file fetched at least once (whole downloads and ranged reads alike), so it never passes the size, and
   * "done" comes once, when every byte has been fetched.
   */
  private progress(file: string, at: number, n: number): void {
    const s = this.state(file);
    if (n > 0) {
      let [lo, hi] = [at, at + n];
      const keep: [number, number][] = [];
      for (const [a, b] of s.got) {
        if (b < lo || a > hi) keep.push([a, b]);
        else [lo, hi] = [Math.min(a, lo), Math.max(b, hi)];
      }
      keep.push([lo, hi]);
      s.got = keep.sort((x, y) => x[0] - y[0]);
      s.loaded = s.got.reduce((t, [a, b]) => t + b - a, 0);
    }
    const cb = this.options.progress_callback;
    if (!cb || s.done) return;
    const total = s.size ?? 0;
    const info = { name: this.name, file, loaded: s.loaded, total, progress: total ? Math.min(100, (100 * s.loaded) / total) : 0 };
    cb({ status: "progress", ...info });
    if (total && s.loaded >= total) {
      s.done = true;
      cb({ status: "done", ...info });
    }
  }

  /**
   * A response's body (bytes from `start` of the file), reporting progress; `expected` bytes (when known) are
   * read into one buffer.
   */
  private async body(file: string, res: Response, expected: number | null, start = 0): Promise<Uint8Array> {
    if (!res.body) {
      const b = new Uint8Array(await res.arrayBuffer());
      this.progress(file, start, b.length);
      return b;
    }
    const reader = res.body.getReader();
    let out: Uint8Array | null = expected !== null ? new Uint8Array(expected) : null;
    const chunks: Uint8Array[] = [];
    let n = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (out && n + value.length <= out.length) out.set(value, n);
      else {
        if (out) chunks.push(out.subarray(0, n));
        out = null;
        chunks.push(value);
      }
      this.progress(file, start + n, value.length);
      n += value.length;
    }
    if (out) return n === out.length ? out : out.subarray(0, n);
    const all = new Uint8Array(n);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return all;
  }

  private static length(res: Response): number | null {
    const v = res.headers.get("content-length");
    return v !== null && /^\d+$/.test(v) && !res.headers.get("content-encoding") ? Number(v) : null;
  }

  /** The total of a Content-Range header "bytes a-b/total" or "bytes * /total"; null when absent or "*". */
  private static rangeTotal(res: Response): number | null {
    const m = /\/(\d+)\s*$/.exec(res.headers.get("content-range") ?? "");
    return m ? Number(m[1]) : null;
  }

  /** A full GET of a file whose server ignores Range: downloaded once, then kept. */
  private keepWhole(file: string, res: Response): Promise<Uint8Array> {
    const s = this.state(file);
    s.ranges = false;
    s.size ??= HttpSource.length(res) ?? undefined;
    s.whole = this.body(file, res, HttpSource.length(res)).then((b) => {
      s.size = b.length;
      if (!s.done) this.progress(file, 0, 0);
      return b;
    });
    s.whole.catch(() => (s.whole = undefined));
    return s.whole;
  }

  /** The file in the Cache API as a Blob: from the cache, or downloaded (with progress) into it first. */
  private cached(file: string): Promise<Blob> {
    const s = this.state(file);
    s.blob ??= (async () => {
      const url = this.url(file);
      const cache = await (globalThis as unknown as { caches: CacheStorage }).caches.open(CACHE_NAME);
      const hit = await cache.match(url);
      if (hit) return hit.blob();
      const res = await this.request(file, "GET");
      if (!res.ok) throw this.httpError(file, res);
      s.size = HttpSource.length(res) ?? undefined;
      let n = 0;
      const counted = res.body
        ? res.body.pipeThrough(
            new TransformStream<Uint8Array, Uint8Array>({
              transform: (chunk, ctl) => {
                this.progress(file, n, chunk.length);
                n += chunk.length;
                ctl.enqueue(chunk);
              },
            }),
          )
        : await res.arrayBuffer();
      const headers = new Headers({ "content-type": res.headers.get("content-type") ?? "application/octet-stream" });
      try {
        await cache.put(url, new Response(counted, { status: 200, headers }));
      } catch (e) {
        throw new Error(`storing ${url} in the browser cache "${CACHE_NAME}" failed: ${(e as Error).message} (free some space, or pass \`cache: false\`)`, { cause: e });
      }
      const blob = await (await cache.match(url))!.blob();
      s.size = blob.size;
      if (!s.done) this.progress(file, 0, 0);
      return blob;
    })();
    s.blob.catch(() => (s.blob = undefined));
    return s.blob;
  }

  async exists(file: string): Promise<boolean> {
    const s = this.files.get(file);
    if (s && (s.size !== undefined || s.whole || s.blob)) return true;
    if (this.useCache()) {
      const cache = await (globalThis as unknown as { caches: CacheStorage }).caches.open(CACHE_NAME);
      if (await cache.match(this.url(file))) return true;
    }
    let res = await this.request(file, "HEAD");
    if (res.status === 405 || res.status === 501) {
      res = await this.request(file, "GET", [0, 1]);
      await res.body?.cancel();
    }
    if (res.ok) return true;
    const code = res.headers.get("x-error-code");
    if ((res.status === 404 || res.status === 416) && code !== "RepoNotFound" && code !== "RevisionNotFound") return false;
    throw this.httpError(file, res);
  }

  async size(file: string): Promise<number> {
    const s = this.state(file);
    if (s.size !== undefined) return s.size;
    if (s.whole) return (await s.whole).length;
    if (this.useCache()) return (await this.cached(file)).size;
    const res = await this.request(file, "GET", [0, 1]);
    if (res.status === 206 || res.status === 416) {
      await res.body?.cancel();
      const total = HttpSource.rangeTotal(res);
      if (total !== null) {
        s.ranges = true;
        return (s.size = total);
      }
      return (await this.keepWhole(file, await this.request(file, "GET"))).length;
    }
    if (!res.ok) throw this.httpError(file, res);
    return (await this.keepWhole(file, res)).length;
  }

  async read(file: string, start = 0, end?: number): Promise<Uint8Array> {
    const s = this.state(file);
    if (this.useCache()) return readBlob(await this.cached(file), file, this.name, start, end);
    if (s.whole) {
      const b = await s.whole;
      return b.slice(...checkRange(file, this.name, start, end ?? b.length, b.length));
    }
    if (end === undefined && start === 0) {
      // A whole small file (config.json, tokenizer.json): one plain GET, not kept.
      const res = await this.request(file, "GET");
      if (!res.ok) throw this.httpError(file, res);
      s.size ??= HttpSource.length(res) ?? undefined;
      const b = await this.body(file, res, HttpSource.length(res));
      s.size = b.length;
      return b;
    }
    const stop = end ?? (await this.size(file));
    if (s.whole) return this.read(file, start, stop);
    if (s.size !== undefined) checkRange(file, this.name, start, stop, s.size);
    if (stop === start) return new Uint8Array(0);
    const res = await this.request(file, "GET", [start, stop]);
    if (res.status === 206) {
      s.ranges = true;
      s.size ??= HttpSource.rangeTotal(res) ?? undefined;
      const b = await this.body(file, res, stop - start, start);
      if (b.length !== stop - start) {
        throw new Error(`${this.url(file)}: asked for bytes [${start}, ${stop}), got ${b.length} bytes (the file has ${s.size ?? "an unknown number of"} bytes)`);
      }
      return b;
    }
    if (res.status === 200) {
      // The server ignores Range: keep the whole file, once, for this and later reads.
      if (s.whole) await res.body?.cancel();
      const b = await (s.whole ?? this.keepWhole(file, res));
      return b.slice(...checkRange(file, this.name, start, stop, b.length));
    }
    if (res.status === 416) {
      await res.body?.cancel();
      throw new Error(`${this.url(file)}: bytes [${start}, ${stop}) asked for, but the file has ${HttpSource.rangeTotal(res) ?? "fewer"} bytes`);
    }
    throw this.httpError(file, res);
  }
}

/** The Hub's address: the option, else $HF_ENDPOINT, else https://huggingface.co. */
function hubEndpoint(options: SourceOptions): string {
  return (options.endpoint ?? env("HF_ENDPOINT") ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, "");
}

/** A Hugging Face Hub repository: files at `${endpoint}/${id}/resolve/${revision}/${file}`. */
export function hubSource(id: string, options: SourceOptions = {}): HttpSource {
  if (!isHubId(id)) throw new Error(`"${id}" is not a Hub model id of the form "owner/name"`);
  const endpoint = hubEndpoint(options);
  const revision = options.revision ?? "main";
  return new HttpSource(`${endpoint}/${id}/resolve/${encodeURIComponent(revision)}`, options, { id, revision, endpoint });
}

// ---------------------------------------------------------------------------------------------------------

/** What from_pretrained accepts as a model location. */
export type ModelLocation = string | ModelSource | FileSystemDirectoryHandle | FileList | readonly File[];

const ACCEPTED =
  'a local directory path (Deno/Node), an http(s):// URL base, a Hub model id "owner/name", File objects (an array or a FileList), a FileSystemDirectoryHandle, or a ModelSource';

function isModelSource(x: unknown): x is ModelSource {
  const o = x as Partial<ModelSource> | null;
  return typeof o === "object" && o !== null && typeof o.read === "function" && typeof o.size === "function" && typeof o.exists === "function";
}

function isDirectoryHandle(x: unknown): x is FileSystemDirectoryHandle {
  const o = x as Partial<FileSystemDirectoryHandle> | null;
  return typeof o === "object" && o !== null && o.kind === "directory" && typeof o.getFileHandle === "function";
}

function isFileLike(x: unknown): x is File {
  const o = x as Partial<File> | null;
  return typeof o === "object" && o !== null && typeof o.name === "string" && typeof o.slice === "function" && typeof o.size === "number";
}

function hasFilesystem(): boolean {
  const g = globalThis as { Deno?: unknown; process?: { versions?: { node?: string } } };
  return typeof g.Deno !== "undefined" || typeof g.process?.versions?.node === "string";
}

function describe(x: unknown): string {
  if (x === null || typeof x !== "object") return JSON.stringify(x) ?? String(x);
  const cls = (x as object).constructor?.name;
  return cls && cls !== "Object" ? `a ${cls}` : "a plain object";
}

/**
 * The ModelSource for a location: a ModelSource as is; a string: an http(s):// URL base, else a local
 * directory (Deno/Node), else — when no such path exists and it reads as "owner/name" — a Hub model id;
 * File objects (an array or FileList) or a FileSystemDirectoryHandle in a browser.
 */
export async function openSource(location: ModelLocation, options: SourceOptions = {}): Promise<ModelSource> {
  if (typeof location === "string") {
    if (/^https?:\/\//i.test(location)) return new HttpSource(location, options);
    if (hasFilesystem()) {
      let stat: Awaited<ReturnType<Fs["stat"]>> | null = null;
      try {
        stat = await (await fs()).stat(location);
      } catch (e) {
        if ((e as { code?: string }).code !== "ENOENT" && (e as Error).name !== "NotFound") {
          throw new Error(`cannot open the model directory ${location}: ${(e as Error).message}`, { cause: e });
        }
      }
      if (stat?.isDirectory()) return new LocalDirectorySource(location);
      if (stat) throw new Error(`${location} is a file; give the model's directory (the folder holding config.json and the weights)`);
      if (isHubId(location)) return hubSource(location, options);
      throw new Error(`${location}: no such directory, and not a Hub model id "owner/name" either`);
    }
    if (isHubId(location)) return hubSource(location, options);
    throw new Error(`"${location}" is not a URL or a Hub model id "owner/name", and a local path cannot be opened here (no filesystem): pass File objects or a FileSystemDirectoryHandle`);
  }
  if (isModelSource(location)) return location;
  if (isDirectoryHandle(location)) return new DirectoryHandleSource(location);
  const list = location as unknown;
  if (typeof list === "object" && list !== null && typeof (list as ArrayLike<unknown>).length === "number") {
    const files = Array.from(list as ArrayLike<unknown>);
    const bad = files.findIndex((f) => !isFileLike(f));
    if (bad < 0 && files.length > 0) return new FileListSource(files as File[]);
    throw new Error(
      files.length === 0 ? "openSource: the list of files is empty; choose the model's folder or its files" : `openSource: item ${bad} of the list is ${describe(files[bad])}, not a File; expected ${ACCEPTED}`,
    );
  }
  throw new Error(`openSource: got ${describe(location)}; expected ${ACCEPTED}`);
}

/**
 * Writes `files` into the directory `dir` (Deno/Node), creating it: each file goes to a temporary name
 * first and is renamed into place, so an interrupted save never leaves a half-written file under its name.
 */
export async function writeDirectory(dir: string, files: Record<string, Uint8Array | string>): Promise<void> {
  const f = await fs();
  await f.mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) {
    const path = joinPath(dir, name);
    const tmp = `${path}.tmp-${Math.random().toString(36).slice(2)}`;
    await f.writeFile(tmp, bytes);
    await f.rename(tmp, path);
  }
}
