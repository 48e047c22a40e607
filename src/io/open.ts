// From a location to its reader: a directory (a path, a URL base, a Hub id, browser Files or a directory
// handle) to the ModelSource that reads it; one file (a path, a URL, a File or Blob) to its ByteFile.
import { BlobFile, DirectoryHandleSource, FileListSource } from "./blob.ts";
import { fs, hasFilesystem, isNotFound, type Fs } from "./fs.ts";
import { httpFile, HttpSource, hubSource, isHubId, type HttpOptions, type SourceOptions } from "./http.ts";
import { LocalDirectorySource, LocalFile } from "./local.ts";
import type { ByteFile, ModelSource } from "./source.ts";

/** One file: a local path or a URL (string or URL), or a browser File / Blob. */
export type FileLocation = string | URL | Blob;

/** Whether `x` is a path, a URL or a Blob (a File included). */
export function isFileLocation(x: unknown): x is FileLocation {
  return typeof x === "string" || x instanceof URL || (typeof Blob !== "undefined" && x instanceof Blob);
}

/** One file's reader, and the file's name for messages. */
export interface OpenedFile {
  readonly name: string;
  readonly bytes: ByteFile;
}

/**
 * The reader of one file, and its name for messages: an http(s):, blob: or data: URL through fetch (never the
 * Cache API); a file: URL or another string a local path (Deno/Node); a File or Blob its slices. `what` says
 * what the file is in messages ("dataset": "cannot open the dataset file …", "the dataset may be private").
 */
export function openFile(location: FileLocation, options: HttpOptions, what: string): OpenedFile {
  const local = (path: string): OpenedFile => ({
    name: path,
    bytes: new LocalFile(path, path, (e) => new Error(`cannot open the ${what} file ${path}: ${(e as Error).message}`, { cause: e })),
  });
  const remote = (url: string): OpenedFile => ({ name: url, bytes: httpFile(url, { ...options, cache: false }, what) });
  if (typeof location === "string") return /^(https?|blob|data):/i.test(location) ? remote(location) : local(location);
  if (location instanceof URL) return location.protocol === "file:" ? local(decodeURIComponent(location.pathname)) : remote(location.href);
  const name = (location as File).name ? `the file ${(location as File).name}` : `a Blob of ${location.size} bytes`;
  return { name, bytes: new BlobFile(location, name) };
}

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
        if (!isNotFound(e)) throw new Error(`cannot open the model directory ${location}: ${(e as Error).message}`, { cause: e });
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
 * The GGUF file a location names, or null when it names none: a path or URL ending in .gguf, a File / Blob,
 * "owner/name/file.gguf" on the Hub, or `gguf_file` in a directory, URL base or Hub repo (then `source` is that
 * directory or repo). AutoModelForCausalLM and AutoTokenizer both read a GGUF location through this.
 */
export async function openGGUFLocation(
  location: ModelLocation | URL | Blob,
  options: SourceOptions & { gguf_file?: string },
): Promise<{ bytes: ByteFile; name: string; source: ModelSource | null } | null> {
  const gguf = ggufLocation(location);
  if (gguf) {
    if (options.gguf_file) throw new Error(`from_pretrained: gguf_file "${options.gguf_file}" names a file in a directory, but the location is already a GGUF file`);
    const hub = typeof gguf === "string" ? await hubGGUF(gguf, options) : null;
    if (hub) return { bytes: sourceFile(hub.source, hub.file), name: `${hub.file} in ${hub.source.name}`, source: hub.source };
    const { name, bytes } = openFile(gguf, options, "GGUF model");
    return { bytes, name, source: null };
  }
  if (!options.gguf_file) return null;
  const source = await openSource(location as ModelLocation, options);
  return { bytes: sourceFile(source, options.gguf_file), name: `${options.gguf_file} in ${source.name}`, source };
}

/**
 * A location that is one GGUF file: a path or URL ending in .gguf, a URL object, a File / Blob, or a list of
 * one File whose name ends in .gguf (an <input type="file"> with the file picked).
 */
function ggufLocation(location: unknown): string | URL | Blob | null {
  if (typeof Blob !== "undefined" && location instanceof Blob) return location;
  const list = location as ArrayLike<unknown> | null;
  if (typeof list === "object" && list !== null && !(list instanceof URL) && typeof list.length === "number" && list.length === 1) {
    const f = list[0];
    if (typeof Blob !== "undefined" && f instanceof Blob && /\.gguf$/i.test((f as File).name ?? "")) return f;
  }
  if (location instanceof URL) return /\.gguf$/i.test(location.pathname) ? location : null;
  if (typeof location === "string") return /\.gguf$/i.test(location.replace(/[?#].*$/, "")) ? location : null;
  return null;
}

/**
 * "owner/name/path/file.gguf" that is no local file (or where there is no filesystem): that file of the Hub
 * repository owner/name (as transformers' from_pretrained("owner/name", gguf_file="path/file.gguf")); else null.
 */
async function hubGGUF(location: string, options: SourceOptions): Promise<{ source: ModelSource; file: string } | null> {
  if (/^[a-z][a-z0-9+.-]*:/i.test(location)) return null;
  const m = /^([^/]+\/[^/]+)\/(.+)$/.exec(location);
  if (!m || !isHubId(m[1]!) || m[2]!.split("/").includes("..")) return null;
  if (hasFilesystem()) {
    try {
      await (await fs()).stat(location);
      return null;
    } catch (e) {
      if (!isNotFound(e)) return null;
    }
  }
  return { source: hubSource(m[1]!, options), file: m[2]! };
}

/** One file of a ModelSource as a ByteFile (gguf_file in a directory, a Hub repo, browser files). */
export function sourceFile(source: ModelSource, file: string): ByteFile {
  return {
    size: () => source.size(file),
    read: (start, end) => source.read(file, start, end),
    head: async (n) => source.read(file, 0, Math.min(n, await source.size(file))),
    async *stream(chunkSize: number) {
      const size = await source.size(file);
      for (let p = 0; p < size; p += chunkSize) yield await source.read(file, p, Math.min(size, p + chunkSize));
    },
  };
}
