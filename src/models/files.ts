// Moved to src/io/ (issue 10): this module only re-exports it until its importers point there.
export { BaseSource, MemorySource, type ModelSource } from "../io/source.ts";
export { LocalDirectorySource, writeDirectory } from "../io/local.ts";
export { DirectoryHandleSource, FileListSource } from "../io/blob.ts";
export {
  CACHE_NAME,
  DEFAULT_HUB_ENDPOINT,
  HttpSource,
  hubSource,
  isHubId,
  type FetchLike,
  type ProgressCallback,
  type ProgressInfo,
  type SourceOptions,
} from "../io/http.ts";
export { openSource, type ModelLocation } from "../io/open.ts";
