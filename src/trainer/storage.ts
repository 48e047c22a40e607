// Where the trainer keeps its checkpoints: a directory on the filesystem (Deno/Node) or an IndexedDB database
// (browser). Both write a checkpoint atomically — its files become visible only once all of them are written,
// so a crash mid-write never leaves something that looks complete — and both mark a complete checkpoint with
// a manifest written last, listing its files and their sizes.
//
// The layouts: storage/fs.ts and storage/indexeddb.ts; the interface and the manifest: storage/base.ts.
//
// A checkpoint id is one path segment ("checkpoint-500"); file names are relative paths ("adapter_model.safetensors",
// "a/b.json"). One writer per directory or database at a time.
import { hasFilesystem } from "../io/fs.ts";
import { FileSystemStorage } from "./storage/fs.ts";
import { IndexedDBStorage } from "./storage/indexeddb.ts";
import type { CheckpointStorage } from "./storage/base.ts";

export { MANIFEST, type CheckpointManifest, type CheckpointStorage } from "./storage/base.ts";
export { FileSystemStorage } from "./storage/fs.ts";
export { CHUNK_SIZE, IndexedDBStorage } from "./storage/indexeddb.ts";

/** What openStorage accepts. */
export type StorageLocation = string | { indexeddb: string } | CheckpointStorage;

/**
 * The storage for a location: a CheckpointStorage as is; `{ indexeddb: name }` or "indexeddb:name" an IndexedDB
 * database; another string a directory (Deno/Node), or in a browser (no filesystem) an IndexedDB database of
 * that name.
 */
export function openStorage(location: StorageLocation): CheckpointStorage {
  if (typeof location === "string") {
    const m = /^indexeddb:(.*)$/i.exec(location);
    if (m) return new IndexedDBStorage(m[1]!);
    if (location === "") throw new Error("openStorage: the location is empty; give a directory or \"indexeddb:<name>\"");
    if (hasFilesystem()) return new FileSystemStorage(location);
    if (typeof indexedDB !== "undefined") return new IndexedDBStorage(location);
    throw new Error(`openStorage("${location}"): there is neither a filesystem nor IndexedDB here`);
  }
  if (typeof location === "object" && location !== null) {
    if ("indexeddb" in location && typeof location.indexeddb === "string") return new IndexedDBStorage(location.indexeddb);
    if (typeof (location as CheckpointStorage).writeCheckpoint === "function" && typeof (location as CheckpointStorage).list === "function") {
      return location as CheckpointStorage;
    }
  }
  throw new Error(`openStorage: expected a directory path, "indexeddb:<name>", { indexeddb: name } or a CheckpointStorage; got ${String(location)}`);
}

/** The ids rotation counts and deletes: the trainer's own "checkpoint-<step>" (as the Trainer's checkpoint-* dirs). */
const ROTATED = /^checkpoint-\d+$/;

/**
 * Deletes the oldest "checkpoint-<step>" checkpoints (in list() order) until at most `save_total_limit` are
 * left, never deleting `keep` nor anything else (save_model's "final" / "final-merged" in IndexedDB, a
 * user's id); nothing when the limit is null, undefined or ≤ 0 (as in TRL). Returns the ids deleted.
 */
export async function rotateCheckpoints(storage: CheckpointStorage, save_total_limit: number | null | undefined, keep?: string): Promise<string[]> {
  if (save_total_limit == null || !(save_total_limit > 0)) return [];
  const ids = (await storage.list()).filter((id) => ROTATED.test(id));
  let excess = ids.length - save_total_limit;
  const deleted: string[] = [];
  for (const id of ids) {
    if (excess <= 0) break;
    if (id === keep) continue;
    await storage.delete(id);
    deleted.push(id);
    excess--;
  }
  return deleted;
}
