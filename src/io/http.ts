// HTTP: one file at a URL (HttpFile), a URL base or a Hugging Face Hub repository (HttpSource). One client for
// both: the token as a bearer, ranged reads where the server honours Range (206), else one download per file
// kept for later reads of it, progress per file, the browser's Cache API, and errors that say what to check
// (the Hub's x-error-code: RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo).
import { BlobFile } from "./blob.ts";
import { checkRange, hasFilesystem } from "./fs.ts";
import { BaseSource, type ByteFile } from "./source.ts";

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

/** How one file or source is fetched: SourceOptions' token, progress, cache and fetch, and extra request headers. */
export interface HttpOptions extends Omit<SourceOptions, "revision" | "endpoint"> {
  headers?: Record<string, string>;
}

export const DEFAULT_HUB_ENDPOINT = "https://huggingface.co";
export const CACHE_NAME = "webtune-models";

/** An environment variable where the host has one and lets it be read without prompting; else undefined. */
export function env(name: string): string | undefined {
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

/** A Hub repository at one revision. */
interface HubRepo {
  id: string;
  revision: string;
  endpoint: string;
}

/** What error hints name: what the files are ("model", "dataset"), and the Hub repository or URL base they are under. */
interface Place {
  what: string;
  hub?: HubRepo;
  base?: string;
}

/** What the requests of one source share: fetch, headers (the token as a bearer), progress and the error hints. */
class HttpClient {
  private readonly fetcher: FetchLike;

  constructor(
    /** The source, for messages and progress. */
    readonly name: string,
    readonly options: HttpOptions,
    readonly place: Place,
    readonly token: string | undefined,
  ) {
    const f = options.fetch ?? (globalThis.fetch as FetchLike | undefined);
    if (!f) throw new Error(`${name}: no fetch in this host; pass one as the \`fetch\` option`);
    this.fetcher = options.fetch ? f : (url, init) => globalThis.fetch(url, init);
  }

  useCache(): boolean {
    if (this.options.cache === false || typeof (globalThis as { caches?: unknown }).caches === "undefined") return false;
    return this.options.cache === true || !hasFilesystem();
  }

  cache(): Promise<Cache> {
    return (globalThis as unknown as { caches: CacheStorage }).caches.open(CACHE_NAME);
  }

  async request(url: string, method: "GET" | "HEAD", range?: [number, number]): Promise<Response> {
    const headers: Record<string, string> = { ...this.options.headers };
    if (this.token) headers.Authorization = `Bearer ${this.token}`;
    if (range) headers.Range = `bytes=${range[0]}-${range[1] - 1}`;
    try {
      return await this.fetcher(url, { method, headers });
    } catch (e) {
      throw new Error(`fetching ${url} failed: ${(e as Error).message} (check the address and the network)`, { cause: e });
    }
  }

  /** The error for a failed response for `file` at `url`, saying what to check. */
  error(url: string, file: string, res: Response): Error {
    const code = res.headers.get("x-error-code");
    const what = `${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ""}${code ? ` (${code})` : ""}`;
    const { hub, base, what: kind } = this.place;
    let hint: string;
    if (res.status === 401 || res.status === 403) {
      hint =
        code === "GatedRepo"
          ? `the ${kind} is gated: accept its terms on ${hub ? `${hub.endpoint}/${hub.id}` : "its page"} and pass an access token as the \`token\` option`
          : this.token
            ? `the token given was refused or has no access: check that it is valid, can read this repository, and (gated ${kind}s) that its terms were accepted`
            : `the ${kind} may be private or gated (pass a Hugging Face access token as the \`token\` option; it is sent as Authorization: Bearer)${hub ? `, or the id "${hub.id}" may be wrong` : ""}`;
    } else if (res.status === 404) {
      hint = hub
        ? code === "RevisionNotFound"
          ? `there is no revision "${hub.revision}" in ${hub.id}: check the \`revision\` option`
          : code === "RepoNotFound"
            ? `there is no repository "${hub.id}": check the model id`
            : `check the model id "${hub.id}" and the revision "${hub.revision}"${code === "EntryNotFound" ? `; the repository has no ${file}` : ""}`
        : base !== undefined
          ? `check the URL base ${base} and that ${file} is under it`
          : "no such file: check the URL";
    } else if (res.status === 429) {
      hint = "too many requests: wait and try again, or pass an access token as the `token` option";
    } else {
      hint = "the server failed; try again later";
    }
    return new Error(`${what}: ${hint}`);
  }
}

function contentLength(res: Response): number | null {
  const v = res.headers.get("content-length");
  return v !== null && /^\d+$/.test(v) && !res.headers.get("content-encoding") ? Number(v) : null;
}

/** A body larger than this is never allocated up front from its Content-Length (a lying header must not exhaust memory). */
const MAX_PREALLOCATE = 1 << 28;

/**
 * The next chunk of a body: a transfer that breaks off (undici's "terminated", a reset) is an error naming the URL,
 * the file, and the bytes got of the bytes expected.
 */
async function nextChunk(reader: ReadableStreamDefaultReader<Uint8Array>, url: string, file: string, got: number, expected: number | null): Promise<ReadableStreamReadResult<Uint8Array>> {
  try {
    return await reader.read();
  } catch (e) {
    const cause = (e as Error & { cause?: Error }).cause?.message;
    throw new Error(
      `${url}: the download${file !== url ? ` of ${file}` : ""} broke off after ${got} bytes${expected !== null ? ` of the ${expected} its Content-Length announced` : ""}: ` +
        `${(e as Error).message}${cause ? ` (${cause})` : ""}. Try again; if it recurs, the server or a proxy is cutting the transfer short`,
      { cause: e },
    );
  }
}

/** The error for a body that ended with fewer or more bytes than its Content-Length. */
function lengthMismatch(url: string, file: string, got: number, expected: number): Error {
  return new Error(`${url}: the server announced ${expected} bytes${file !== url ? ` for ${file}` : ""} (Content-Length) but sent ${got}; the transfer was cut short or the header lies. Try again`);
}

/** The total of a Content-Range header "bytes a-b/total" or "bytes * /total"; null when absent or "*". */
function rangeTotal(res: Response): number | null {
  const m = /\/(\d+)\s*$/.exec(res.headers.get("content-range") ?? "");
  return m ? Number(m[1]) : null;
}

/**
 * One file at a URL, read through fetch: ranged reads where the server honours Range (206), else one
 * download kept for later reads; through the Cache API where the client uses it. `file` names it in
 * progress reports and error hints, `label` in range errors.
 */
export class HttpFile implements ByteFile {
  /** The size, once known. */
  private known?: number;
  /** The whole file, kept when the server ignores Range (downloaded once, read from memory after). */
  private whole?: Promise<Uint8Array>;
  /** The file in the browser's Cache API, read as a disk-backed Blob. */
  private blob?: Promise<Blob>;
  /** The byte ranges fetched so far (sorted, disjoint), their total, and whether "done" was reported. */
  private got: [number, number][] = [];
  private loaded = 0;
  private done = false;

  constructor(
    private readonly client: HttpClient,
    readonly url: string,
    readonly file: string,
    readonly label: string,
  ) {}

  /**
   * Notes that bytes [at, at + n) arrived and reports progress: `loaded` counts the bytes of the file fetched
   * at least once (whole downloads and ranged reads alike), so it never passes the size, and "done" comes
   * once, when every byte has been fetched.
   */
  private progress(at: number, n: number): void {
    if (n > 0) {
      let [lo, hi] = [at, at + n];
      const keep: [number, number][] = [];
      for (const [a, b] of this.got) {
        if (b < lo || a > hi) keep.push([a, b]);
        else [lo, hi] = [Math.min(a, lo), Math.max(b, hi)];
      }
      keep.push([lo, hi]);
      this.got = keep.sort((x, y) => x[0] - y[0]);
      this.loaded = this.got.reduce((t, [a, b]) => t + b - a, 0);
    }
    const cb = this.client.options.progress_callback;
    if (!cb || this.done) return;
    const total = this.known ?? 0;
    const info = { name: this.client.name, file: this.file, loaded: this.loaded, total, progress: total ? Math.min(100, (100 * this.loaded) / total) : 0 };
    cb({ status: "progress", ...info });
    if (total && this.loaded >= total) {
      this.done = true;
      cb({ status: "done", ...info });
    }
  }

  /** A response's body (bytes from `start` of the file), reporting progress; `expected` bytes (when known) are read into one buffer. */
  private async body(res: Response, expected: number | null, start = 0): Promise<Uint8Array> {
    if (!res.body) {
      const b = new Uint8Array(await res.arrayBuffer());
      this.progress(start, b.length);
      return b;
    }
    const reader = res.body.getReader();
    let out: Uint8Array | null = expected !== null && expected <= MAX_PREALLOCATE ? new Uint8Array(expected) : null;
    const chunks: Uint8Array[] = [];
    let n = 0;
    for (;;) {
      const { done, value } = await nextChunk(reader, this.url, this.file, n, expected);
      if (done) break;
      if (out && n + value.length <= out.length) out.set(value, n);
      else {
        if (out) chunks.push(out.subarray(0, n));
        out = null;
        chunks.push(value);
      }
      this.progress(start + n, value.length);
      n += value.length;
    }
    if (expected !== null && n !== expected && contentLength(res) === expected) throw lengthMismatch(this.url, this.file, n, expected);
    if (out) return n === out.length ? out : out.subarray(0, n);
    const all = new Uint8Array(n);
    let at = 0;
    for (const c of chunks) {
      all.set(c, at);
      at += c.length;
    }
    return all;
  }

  /** A full GET of a file whose server ignores Range: downloaded once, then kept. */
  private keepWhole(res: Response): Promise<Uint8Array> {
    this.known ??= contentLength(res) ?? undefined;
    this.whole = this.body(res, contentLength(res)).then((b) => {
      this.known = b.length;
      if (!this.done) this.progress(0, 0);
      return b;
    });
    this.whole.catch(() => (this.whole = undefined));
    return this.whole;
  }

  /** The file in the Cache API as a Blob: from the cache, or downloaded (with progress) into it first. */
  private cached(): Promise<Blob> {
    this.blob ??= (async () => {
      const url = this.url;
      const cache = await this.client.cache();
      const hit = await cache.match(url);
      if (hit) return hit.blob();
      const res = await this.client.request(url, "GET");
      if (!res.ok) throw this.client.error(url, this.file, res);
      this.known = contentLength(res) ?? undefined;
      let n = 0;
      const counted = res.body
        ? res.body.pipeThrough(
            new TransformStream<Uint8Array, Uint8Array>({
              transform: (chunk, ctl) => {
                this.progress(n, chunk.length);
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
      this.known = blob.size;
      if (!this.done) this.progress(0, 0);
      return blob;
    })();
    this.blob.catch(() => (this.blob = undefined));
    return this.blob;
  }

  /** Whether the file exists; an error (not false) when the repository or revision is missing or access is refused. */
  async exists(): Promise<boolean> {
    if (this.known !== undefined || this.whole || this.blob) return true;
    if (this.client.useCache() && (await (await this.client.cache()).match(this.url))) return true;
    let res = await this.client.request(this.url, "HEAD");
    if (res.status === 405 || res.status === 501) {
      res = await this.client.request(this.url, "GET", [0, 1]);
      await res.body?.cancel();
    }
    if (res.ok) return true;
    const code = res.headers.get("x-error-code");
    if ((res.status === 404 || res.status === 416) && code !== "RepoNotFound" && code !== "RevisionNotFound") return false;
    throw this.client.error(this.url, this.file, res);
  }

  async size(): Promise<number> {
    if (this.known !== undefined) return this.known;
    if (this.whole) return (await this.whole).length;
    if (this.client.useCache()) return (await this.cached()).size;
    const res = await this.client.request(this.url, "GET", [0, 1]);
    if (res.status === 206 || res.status === 416) {
      await res.body?.cancel();
      const total = rangeTotal(res);
      if (total !== null) return (this.known = total);
      return (await this.keepWhole(await this.client.request(this.url, "GET"))).length;
    }
    if (!res.ok) throw this.client.error(this.url, this.file, res);
    return (await this.keepWhole(res)).length;
  }

  async read(start = 0, end?: number): Promise<Uint8Array> {
    if (this.client.useCache()) return new BlobFile(await this.cached(), this.label).read(start, end);
    if (this.whole) {
      const b = await this.whole;
      return b.slice(...checkRange(this.label, start, end ?? b.length, b.length));
    }
    if (end === undefined && start === 0) {
      // A whole small file (config.json, tokenizer.json): one plain GET, not kept.
      const res = await this.client.request(this.url, "GET");
      if (!res.ok) throw this.client.error(this.url, this.file, res);
      this.known ??= contentLength(res) ?? undefined;
      const b = await this.body(res, contentLength(res));
      this.known = b.length;
      return b;
    }
    const stop = end ?? (await this.size());
    if (this.whole) return this.read(start, stop);
    if (this.known !== undefined) checkRange(this.label, start, stop, this.known);
    if (stop === start) return new Uint8Array(0);
    const res = await this.client.request(this.url, "GET", [start, stop]);
    if (res.status === 206) {
      this.known ??= rangeTotal(res) ?? undefined;
      const b = await this.body(res, stop - start, start);
      if (b.length !== stop - start) {
        throw new Error(`${this.url}: asked for bytes [${start}, ${stop}), got ${b.length} bytes (the file has ${this.known ?? "an unknown number of"} bytes)`);
      }
      return b;
    }
    if (res.status === 200) {
      // The server ignores Range: keep the whole file, once, for this and later reads.
      if (this.whole) await res.body?.cancel();
      const b = await (this.whole ?? this.keepWhole(res));
      return b.slice(...checkRange(this.label, start, stop, b.length));
    }
    if (res.status === 416) {
      await res.body?.cancel();
      throw new Error(`${this.url}: bytes [${start}, ${stop}) asked for, but the file has ${rangeTotal(res) ?? "fewer"} bytes`);
    }
    throw this.client.error(this.url, this.file, res);
  }

  async head(n: number): Promise<Uint8Array> {
    if (this.client.useCache() || this.whole || this.known !== undefined || n === 0) return this.read(0, Math.min(n, await this.size()));
    const res = await this.client.request(this.url, "GET", [0, n]);
    if (res.status === 416) {
      await res.body?.cancel();
      return new Uint8Array(0);
    }
    if (!res.ok) throw this.client.error(this.url, this.file, res);
    if (res.status === 206) this.known ??= rangeTotal(res) ?? undefined;
    // A server that ignores Range sends the whole file (200): only its first n bytes are read.
    const out = new Uint8Array(n);
    let got = 0;
    const reader = res.body?.getReader();
    if (!reader) return new Uint8Array(await res.arrayBuffer()).subarray(0, n);
    try {
      while (got < n) {
        const { done, value } = await nextChunk(reader, this.url, this.file, got, null);
        if (done) break;
        const take = Math.min(value.length, n - got);
        out.set(value.subarray(0, take), got);
        got += take;
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    return out.subarray(0, got);
  }

  /** The file from the start, as the body arrives (one GET), or in `chunkSize` pieces of a cached or kept copy. */
  async *stream(chunkSize: number): AsyncGenerator<Uint8Array> {
    if (this.client.useCache()) {
      yield* new BlobFile(await this.cached(), this.label).stream(chunkSize);
      return;
    }
    if (this.whole) {
      const b = await this.whole;
      for (let at = 0; at < b.length; at += chunkSize) yield b.slice(at, at + chunkSize);
      return;
    }
    const res = await this.client.request(this.url, "GET");
    if (!res.ok) throw this.client.error(this.url, this.file, res);
    this.known ??= contentLength(res) ?? undefined;
    if (!res.body) {
      const b = new Uint8Array(await res.arrayBuffer());
      this.progress(0, b.length);
      yield b;
      return;
    }
    const reader = res.body.getReader();
    const announced = contentLength(res);
    try {
      let n = 0;
      for (;;) {
        const { done, value } = await nextChunk(reader, this.url, this.file, n, announced);
        if (done) break;
        if (!value?.length) continue;
        this.progress(n, value.length);
        n += value.length;
        yield value;
      }
      if (announced !== null && n !== announced) throw lengthMismatch(this.url, this.file, n, announced);
      this.known = n;
      if (!this.done) this.progress(0, 0);
    } finally {
      reader.releaseLock();
      await res.body.cancel().catch(() => {});
    }
  }
}

/** One file at `url` (a dataset file, say: `what` names it in error hints), read as HttpFile does. */
export function httpFile(url: string, options: HttpOptions = {}, what = "file"): HttpFile {
  return new HttpFile(new HttpClient(url, options, { what }, options.token), url, url, url);
}

/**
 * Files under a URL base (`${base}/${file}`), read through fetch as HttpFile reads one. In a browser, files
 * are stored in and read from the Cache API unless `cache: false`.
 */
export class HttpSource extends BaseSource {
  readonly name: string;
  private readonly client: HttpClient;
  private readonly files = new Map<string, HttpFile>();

  constructor(
    readonly base: string,
    options: HttpOptions = {},
    hub?: HubRepo,
  ) {
    super();
    this.base = base.replace(/\/+$/, "");
    this.name = hub ? `${hub.id}${hub.revision === "main" ? "" : `@${hub.revision}`}${hub.endpoint === DEFAULT_HUB_ENDPOINT ? "" : ` on ${hub.endpoint}`}` : this.base;
    this.client = new HttpClient(this.name, options, { what: "model", hub, base: this.base }, options.token ?? (hub ? env("HF_TOKEN") : undefined));
  }

  /** The URL of `file` (its path segments escaped). */
  url(file: string): string {
    return `${this.base}/${file.split("/").map(encodeURIComponent).join("/")}`;
  }

  private file(file: string): HttpFile {
    let f = this.files.get(file);
    if (!f) this.files.set(file, (f = new HttpFile(this.client, this.url(file), file, `${file} in ${this.name}`)));
    return f;
  }

  exists(file: string): Promise<boolean> {
    return this.file(file).exists();
  }

  size(file: string): Promise<number> {
    return this.file(file).size();
  }

  read(file: string, start?: number, end?: number): Promise<Uint8Array> {
    return this.file(file).read(start, end);
  }
}

/** The Hub's address: the option, else $HF_ENDPOINT, else https://huggingface.co. */
export function hubEndpoint(options: { endpoint?: string }): string {
  return (options.endpoint ?? env("HF_ENDPOINT") ?? DEFAULT_HUB_ENDPOINT).replace(/\/+$/, "");
}

/** A Hugging Face Hub repository: files at `${endpoint}/${id}/resolve/${revision}/${file}`. */
export function hubSource(id: string, options: SourceOptions = {}): HttpSource {
  if (!isHubId(id)) throw new Error(`"${id}" is not a Hub model id of the form "owner/name"`);
  const endpoint = hubEndpoint(options);
  const revision = options.revision ?? "main";
  return new HttpSource(`${endpoint}/${id}/resolve/${encodeURIComponent(revision)}`, options, { id, revision, endpoint });
}
