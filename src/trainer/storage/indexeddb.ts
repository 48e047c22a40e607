// Checkpoints in an IndexedDB database (browser), object store "files":
//   "<id>/<gen>/<file>#<n>"        chunk n (8 MiB) of a file of one write ("generation") of <id>
//   "<id>/webtune_checkpoint.json" the manifest (an object, naming <gen>), put last, in its own transaction;
//                                  chunks no manifest names are garbage
import { createStore, del, get, getMany, promisifyRequest, setMany, type UseStore } from "idb-keyval";
import { BaseStorage, checkId, isManifest, MANIFEST, sortIds, toEntries, token, type CheckpointManifest } from "./base.ts";

/** Bytes per IndexedDB value: larger files are split into chunks of this size. */
export const CHUNK_SIZE = 8 * 1024 * 1024;

function manifestKey(id: string): string {
  return `${id}/${MANIFEST}`;
}

function chunkKey(id: string, gen: string, file: string, n: number): string {
  return `${id}/${gen}/${file}#${n}`;
}

/** Every key from `prefix` up to (not including) anything past it. */
function prefixRange(prefix: string): IDBKeyRange {
  return IDBKeyRange.bound(prefix, `${prefix}\uffff`);
}

/** The chunk keys a manifest's files need. */
function chunkKeys(m: CheckpointManifest): string[] {
  const cs = m.chunk_size ?? CHUNK_SIZE;
  const out: string[] = [];
  for (const [file, size] of Object.entries(m.files)) {
    for (let n = 0; n * cs < size; n++) out.push(chunkKey(m.id, m.gen!, file, n));
  }
  return out;
}

/** The request's result, or its error, as a promise (inside an open transaction). */
function request<T>(r: IDBRequest<T>): Promise<T> {
  return new Promise((ok, fail) => {
    r.onsuccess = () => ok(r.result);
    r.onerror = () => fail(r.error);
  });
}

/**
 * Checkpoints in an IndexedDB database (object store "files"): chunks "<id>/<gen>/<file>#<n>", then the
 * manifest "<id>/webtune_checkpoint.json" in its own transaction, which also checks that every chunk is there.
 */
export class IndexedDBStorage extends BaseStorage {
  readonly name: string;
  private readonly store: UseStore;
  /** Key prefixes "<id>/<gen>/" of writes this object has in progress (their chunks are not garbage). */
  private readonly writing = new Set<string>();

  constructor(
    readonly database: string,
    readonly chunkSize = CHUNK_SIZE,
  ) {
    super();
    if (!database) throw new Error("IndexedDBStorage: the database name is empty");
    if (typeof indexedDB === "undefined") throw new Error(`there is no IndexedDB here for checkpoints "indexeddb:${database}" (use a directory in Deno/Node)`);
    if (!Number.isSafeInteger(chunkSize) || chunkSize <= 0) throw new Error(`IndexedDBStorage: bad chunk size ${chunkSize}`);
    this.name = `indexeddb:${database}`;
    this.store = createStore(database, "files");
  }

  protected async manifest(id: string): Promise<CheckpointManifest | null> {
    const m = await get<unknown>(manifestKey(id), this.store);
    return isManifest(m) && typeof m.gen === "string" ? m : null;
  }

  /**
   * The first half of writeCheckpoint: stores the chunks of a new generation of checkpoint `id` and returns
   * the manifest that commitCheckpoint() makes visible. Until then nothing is listed, and the chunks are
   * garbage for the next write or delete through another IndexedDBStorage object (this one keeps them until
   * commitCheckpoint: an interrupted write is collected after a reload).
   */
  async stageCheckpoint(id: string, files: Record<string, Uint8Array | string>): Promise<CheckpointManifest> {
    checkId(id);
    const entries = toEntries(files);
    await this.collect();
    const gen = token();
    const manifest: CheckpointManifest = { format: "webtune-checkpoint", version: 1, id, created: Date.now(), files: {}, gen, chunk_size: this.chunkSize };
    const inflight = `${id}/${gen}/`;
    this.writing.add(inflight);
    try {
      // Chunks go in batches of about one chunk's bytes per transaction (small files share one).
      let batch: [string, Uint8Array][] = [];
      let bytes = 0;
      for (const [name, data] of entries) {
        manifest.files[name] = data.length;
        for (let n = 0, at = 0; at < data.length; n++, at += this.chunkSize) {
          const piece = data.slice(at, Math.min(at + this.chunkSize, data.length));
          batch.push([chunkKey(id, gen, name, n), piece]);
          bytes += piece.length;
          if (bytes >= this.chunkSize) {
            await setMany(batch, this.store);
            batch = [];
            bytes = 0;
          }
        }
      }
      if (batch.length) await setMany(batch, this.store);
    } catch (e) {
      // Nothing half-written stays: this generation's chunks go now (a crash instead leaves them to collect()).
      await this.store("readwrite", (st) => {
        st.delete(prefixRange(inflight));
        return promisifyRequest(st.transaction);
      }).catch(() => {});
      this.writing.delete(inflight);
      throw new Error(`writing checkpoint "${id}" to ${this.name} failed: ${await this.explain(e, entries)}`, { cause: e });
    }
    return manifest;
  }

  /** What went wrong in a write, for its error; for a full quota, how much is used and what to delete. */
  private async explain(e: unknown, entries: [string, Uint8Array][]): Promise<string> {
    const err = e as { name?: string; message?: string; inner?: { name?: string } } | null;
    const quota = err?.name === "QuotaExceededError" || err?.inner?.name === "QuotaExceededError" || /quota/i.test(err?.message ?? "");
    if (!quota) return err?.message ?? String(e);
    const mb = (n: number) => `${(n / 1048576).toFixed(1)} MB`;
    const need = entries.reduce((n, [, b]) => n + b.length, 0);
    let usage = "";
    try {
      const est = await navigator.storage?.estimate?.();
      // (Only when it tells: the quota can also be the browser's whole budget, or the disk, filling up.)
      if (est && typeof est.usage === "number" && typeof est.quota === "number" && est.usage > 0.8 * est.quota) usage = `; ${mb(est.usage)} of this site's ${mb(est.quota)} are in use`;
    } catch {
      // no estimate
    }
    let held = "";
    try {
      const ids = await this.list();
      const sizes = await Promise.all(ids.map(async (id) => {
        const m = await this.manifest(id);
        return `${id} (${mb(Object.values(m?.files ?? {}).reduce((n, x) => n + x, 0))})`;
      }));
      held = ids.length ? ` Delete checkpoints you no longer need, oldest first: ${sizes.join(", ")} (or lower save_total_limit), or free this site's storage in the browser's settings, then save again.` : " There is no checkpoint here to delete: free this site's storage in the browser's settings (or other sites'), then save again.";
    } catch {
      held = " Delete old checkpoints or free this site's storage in the browser's settings, then save again.";
    }
    return `the browser's storage quota is full (QuotaExceededError): the checkpoint needs ${mb(need)}${usage}. Nothing of it was kept.${held}`;
  }

  /**
   * The second half of writeCheckpoint: in one transaction, checks that every chunk of the staged write is
   * there and puts the manifest; then removes the chunks of the generation it replaced.
   */
  async commitCheckpoint(manifest: CheckpointManifest): Promise<void> {
    const { id, gen } = manifest;
    const inflight = `${id}/${gen}/`;
    let problem = "";
    try {
      const need = chunkKeys(manifest);
      await this.store("readwrite", (s) => {
        void request(s.getAllKeys(prefixRange(`${id}/${gen}/`))).then((got) => {
          const have = new Set(got.map(String));
          const missing = need.filter((k) => !have.has(k));
          if (missing.length) {
            problem = `${missing.length} of its ${need.length} chunks are gone (${missing[0]}…): did another page delete or overwrite it?`;
            s.transaction.abort();
          } else {
            s.put(manifest, manifestKey(id));
          }
        }, () => {});
        return promisifyRequest(s.transaction);
      });
    } catch (e) {
      throw new Error(`writing checkpoint "${id}" to ${this.name} failed: ${problem || (e as Error)?.message}`, { cause: e });
    } finally {
      this.writing.delete(inflight);
    }
    await this.collect(id);
  }

  async writeCheckpoint(id: string, files: Record<string, Uint8Array | string>): Promise<void> {
    await this.commitCheckpoint(await this.stageCheckpoint(id, files));
  }

  /**
   * Removes chunks no manifest names (of checkpoint `only`, or of all), except those of writes this object has
   * in progress; in one transaction, so a manifest cannot appear halfway through.
   */
  private collect(only?: string): Promise<void> {
    return this.store("readwrite", (s) => {
      const range = only === undefined ? undefined : prefixRange(`${only}/`);
      void request(s.getAllKeys(range)).then(async (keys) => {
        const all = keys.filter((k): k is string => typeof k === "string");
        const manifests = all.filter((k) => k.endsWith(`/${MANIFEST}`) && !k.slice(0, -MANIFEST.length - 1).includes("/"));
        const live = new Set<string>();
        const values = await Promise.all(manifests.map((k) => request(s.get(k))));
        values.forEach((m, i) => {
          const id = manifests[i]!.slice(0, -MANIFEST.length - 1);
          if (isManifest(m) && typeof m.gen === "string") live.add(`${id}/${m.gen}/`);
        });
        for (const k of all) {
          if (k.endsWith(`/${MANIFEST}`)) continue;
          const m = /^([^/]+\/[^/]+\/)/.exec(k);
          if (!m || live.has(m[1]!) || this.writing.has(m[1]!)) continue;
          s.delete(k);
        }
      }, () => {});
      return promisifyRequest(s.transaction);
    });
  }

  async list(): Promise<string[]> {
    const found = await this.store("readonly", async (s) => {
      const keys = new Set((await request(s.getAllKeys())).filter((k): k is string => typeof k === "string"));
      const ids = [...keys].filter((k) => k.endsWith(`/${MANIFEST}`)).map((k) => k.slice(0, -MANIFEST.length - 1)).filter((id) => !id.includes("/"));
      const values = await Promise.all(ids.map((id) => request(s.get(manifestKey(id)))));
      const out: { id: string; created: number }[] = [];
      values.forEach((m, i) => {
        if (isManifest(m) && typeof m.gen === "string" && m.id === ids[i] && chunkKeys(m).every((k) => keys.has(k))) {
          out.push({ id: ids[i]!, created: typeof m.created === "number" ? m.created : 0 });
        }
      });
      return out;
    });
    return sortIds(found);
  }

  async damaged(): Promise<{ id: string; problem: string }[]> {
    return this.store("readonly", async (s) => {
      const keys = new Set((await request(s.getAllKeys())).filter((k): k is string => typeof k === "string"));
      const ids = [...keys].filter((k) => k.endsWith(`/${MANIFEST}`)).map((k) => k.slice(0, -MANIFEST.length - 1)).filter((id) => !id.includes("/"));
      const values = await Promise.all(ids.map((id) => request(s.get(manifestKey(id)))));
      const out: { id: string; problem: string }[] = [];
      values.forEach((m, i) => {
        const id = ids[i]!;
        if (!isManifest(m) || typeof m.gen !== "string" || m.id !== id) out.push({ id, problem: `${MANIFEST} is not a webtune checkpoint manifest` });
        else {
          const missing = chunkKeys(m).filter((k) => !keys.has(k));
          if (missing.length) out.push({ id, problem: `${missing.length} chunk(s) of its files are missing (${missing[0]})` });
        }
      });
      return out;
    });
  }

  async delete(id: string): Promise<void> {
    checkId(id);
    await del(manifestKey(id), this.store);
    await this.store("readwrite", (s) => {
      s.delete(prefixRange(`${id}/`));
      return promisifyRequest(s.transaction);
    });
    await this.collect();
  }

  protected async readFile(id: string, m: CheckpointManifest, file: string, start: number, end: number): Promise<Uint8Array> {
    const out = new Uint8Array(end - start);
    if (end === start) return out;
    const cs = m.chunk_size ?? CHUNK_SIZE;
    const size = m.files[file]!;
    const first = Math.floor(start / cs);
    const last = Math.floor((end - 1) / cs);
    const keys: string[] = [];
    for (let n = first; n <= last; n++) keys.push(chunkKey(id, m.gen!, file, n));
    const chunks = await getMany<Uint8Array>(keys, this.store);
    chunks.forEach((c, i) => {
      const n = first + i;
      const want = Math.min(cs, size - n * cs);
      if (!(c instanceof Uint8Array) || c.length !== want) {
        throw new Error(`${file} in ${this.name}/${id}: chunk ${n} is ${c ? `${(c as Uint8Array).length} bytes, not ${want}` : "missing"}`);
      }
      const a = Math.max(start, n * cs);
      const b = Math.min(end, n * cs + want);
      out.set(c.subarray(a - n * cs, b - n * cs), a - start);
    });
    return out;
  }
}
