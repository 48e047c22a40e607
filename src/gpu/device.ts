// One shared GPUDevice for the browser, Deno and Node, with the adapter's real limits and optional features.
import { BufferPool } from "./buffers.ts";
import { Batch } from "./encoder.ts";
import { PipelineCache } from "./pipelines.ts";

export type Host = "browser" | "deno" | "node";

export interface DeviceOptions {
  /** Use this device instead of requesting one (it becomes the shared device). */
  device?: GPUDevice;
  powerPreference?: GPUPowerPreference;
  /** Run every dispatch in its own error scope and submission, so a validation error names its kernel. */
  validate?: boolean;
}

export interface DeviceInfo {
  host: Host;
  adapter: { vendor: string; architecture: string; device: string; description: string; isFallbackAdapter: boolean };
  features: { shader_f16: boolean; subgroups: boolean; timestamp_query: boolean };
  limits: Record<(typeof LIMITS)[number], number>;
  /** Set when Node fell back to SwiftShader (a CPU Vulkan driver). */
  swiftshader: boolean;
  validate: boolean;
}

/** Limits requested at the adapter's value rather than the WebGPU defaults. */
const LIMITS = [
  "maxBufferSize",
  "maxStorageBufferBindingSize",
  "maxUniformBufferBindingSize",
  "maxComputeWorkgroupStorageSize",
  "maxStorageBuffersPerShaderStage",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "minUniformBufferOffsetAlignment",
  "minStorageBufferOffsetAlignment",
] as const;

const FEATURES = ["shader-f16", "subgroups", "timestamp-query"] as const;

export const SWIFTSHADER_ICD = "/usr/lib/chromium/vk_swiftshader_icd.json";

/**
 * The device is gone (GPUDevice.lost resolved: destroy(), a driver reset or crash, a browser reclaiming it). Every
 * buffer, pipeline and tensor of that device is unusable: getDevice() makes a new device; models and tensors must
 * be created again on it (SFTTrainer does this itself: see its train()).
 */
export class DeviceLostError extends Error {
  constructor(
    /** GPUDeviceLostInfo.reason: "destroyed" (device.destroy()) or "unknown". */
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "DeviceLostError";
  }
}

/**
 * Whether `error` (thrown while working on `g`) came from losing g's device: a DeviceLostError, or any error once
 * g.device.lost has resolved. A failed readback (mapAsync rejects) can come before the lost promise resolves: an
 * error whose message speaks of a lost or destroyed device waits up to `waitMs` for it.
 */
export async function deviceLost(error: unknown, g: Gpu, waitMs = 2000): Promise<boolean> {
  if (error instanceof DeviceLostError || g.lost) return true;
  const message = error instanceof Error ? `${error.name} ${error.message}` : String(error);
  if (!/lost|destroy|OperationError|AbortError/i.test(message)) return false;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), waitMs)));
  const lost = await Promise.race([g.device.lost.then(() => true), late]);
  clearTimeout(timer);
  return lost;
}

/** Everything that lives as long as the device: the pool, the pipeline cache, the open batch. */
export class Gpu {
  readonly pool: BufferPool;
  readonly pipelines: PipelineCache;
  readonly batch: Batch;
  /** First uncaptured error or loss since the last sync point; thrown at the next one. */
  private fault: Error | null = null;
  lost = false;

  constructor(readonly device: GPUDevice, readonly info: DeviceInfo) {
    this.pool = new BufferPool(device);
    this.pipelines = new PipelineCache(device);
    this.batch = new Batch(this);
    device.lost.then((e) => {
      this.lost = true;
      if (e.reason !== "destroyed") this.fault ??= new DeviceLostError(e.reason, `WebGPU device lost (${e.reason}): ${e.message}`);
    });
    device.addEventListener("uncapturederror", (ev) => {
      const err = (ev as GPUUncapturedErrorEvent).error;
      this.fault ??= new Error(`WebGPU error: ${err.message}`);
    });
  }

  /** Records an asynchronous failure (a popped error scope, a lost device) to throw at the next sync point. */
  fail(err: Error): void {
    this.fault ??= err;
  }

  /** Throws the first recorded failure, if any. Called at every sync point (readback, flush). */
  check(): void {
    if (this.lost && !this.fault) this.fault = new DeviceLostError("destroyed", "WebGPU device was destroyed; call getDevice() again");
    const f = this.fault;
    if (f) {
      this.fault = null;
      throw f;
    }
  }
}

let current: Gpu | null = null;
let pending: Promise<Gpu> | null = null;
// dawn.node aborts if the object returned by create() is garbage-collected while in use: keep it here.
const dawnRoots: unknown[] = [];

export function hostName(): Host {
  const g = globalThis as { Deno?: unknown; process?: { versions?: { node?: string } }; window?: unknown };
  if (g.Deno) return "deno";
  if (g.process?.versions?.node && typeof g.window === "undefined") return "node";
  return "browser";
}

/** The shared device (requested on first call). Pass `{device}` to use your own. */
export async function getDevice(options: DeviceOptions = {}): Promise<GPUDevice> {
  return (await initGpu(options)).device;
}

/** The shared device's context: device, pool, pipeline cache. Creates the device on first call. */
export async function initGpu(options: DeviceOptions = {}): Promise<Gpu> {
  if (options.device) {
    if (current?.device !== options.device) current = await wrap(options.device, null, false, options);
    return current;
  }
  if (current && !current.lost) {
    if (options.validate !== undefined) current.info.validate = options.validate;
    return current;
  }
  pending ??= create(options).finally(() => (pending = null));
  current = await pending;
  return current;
}

/** The context of the device from `getDevice()`; throws if it has not been created yet. */
export function gpu(): Gpu {
  if (!current) throw new Error("No WebGPU device yet: call `await getDevice()` before creating tensors");
  return current;
}

/**
 * llvmpipe, SwiftShader and other software adapters: kernels pick register-blocked tiles without
 * workgroup memory there (barriers are expensive on CPUs), shared-memory tiles on GPUs.
 */
export function isCpuAdapter(info: DeviceInfo): boolean {
  const a = info.adapter;
  const name = `${a.description} ${a.architecture} ${a.device}`;
  return info.swiftshader || a.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test(name);
}

/** Adapter, features and limits of the shared device. */
export function deviceInfo(): DeviceInfo {
  return gpu().info;
}

async function create(options: DeviceOptions): Promise<Gpu> {
  const host = hostName();
  return withRuntimeDir(host, () => createOn(host, options));
}

async function createOn(host: Host, options: DeviceOptions): Promise<Gpu> {
  const tried: string[] = [];
  let adapter: GPUAdapter | null = null;
  let swiftshader = false;
  if (host === "node") ({ adapter, swiftshader } = await nodeAdapter(options, tried));
  else {
    const nav = (globalThis as { navigator?: { gpu?: GPU } }).navigator;
    if (!nav?.gpu) {
      tried.push(`${host}: navigator.gpu is undefined`);
    } else {
      adapter = await nav.gpu.requestAdapter({ powerPreference: options.powerPreference });
      tried.push(`${host}: navigator.gpu.requestAdapter() -> ${adapter ? "adapter" : "null"}`);
    }
  }
  if (!adapter) throw new Error(noAdapterMessage(host, tried));
  return wrap(null, adapter, swiftshader, options);
}

async function wrap(own: GPUDevice | null, adapter: GPUAdapter | null, swiftshader: boolean, options: DeviceOptions) {
  let device = own;
  if (!device) {
    const a = adapter!;
    const requiredLimits: Record<string, number> = {};
    for (const k of LIMITS) {
      const v = (a.limits as unknown as Record<string, number | undefined>)[k];
      if (typeof v === "number") requiredLimits[k] = v;
    }
    const requiredFeatures = FEATURES.filter((f) => a.features.has(f)) as GPUFeatureName[];
    device = await a.requestDevice({ requiredLimits, requiredFeatures, label: "webtune" });
  }
  const info: DeviceInfo = {
    host: hostName(),
    adapter: adapterInfo(adapter ?? null, device),
    features: {
      shader_f16: device.features.has("shader-f16"),
      subgroups: device.features.has("subgroups"),
      timestamp_query: device.features.has("timestamp-query"),
    },
    limits: Object.fromEntries(
      LIMITS.map((k) => [k, (device!.limits as unknown as Record<string, number>)[k] ?? 0]),
    ) as DeviceInfo["limits"],
    swiftshader,
    validate: options.validate ?? false,
  };
  return new Gpu(device, info);
}

type DenoEnvHost = {
  build: { os: string };
  env: { get(k: string): string | undefined; set(k: string, v: string): void; delete(k: string): void };
  permissions: { querySync(d: { name: string; variable?: string }): { state: string } };
  makeTempDirSync(o: { prefix: string }): string;
  removeSync(path: string): void;
};

/**
 * Runs `f` (the adapter and device requests) with XDG_RUNTIME_DIR set where it is unset or not absolute, on
 * Linux and the BSDs under Deno and Node. Why: Mesa's Vulkan device-select layer (VK_LAYER_MESA_device_select,
 * an implicit layer from mesa-vulkan-drivers that the Vulkan loader puts under Deno's wgpu and Node's Dawn)
 * asks the Wayland compositor for the default GPU at every vkEnumeratePhysicalDevices, and libwayland's
 * wl_display_connect prints "error: XDG_RUNTIME_DIR is invalid or not set in the environment." on stderr
 * (twice per adapter request) wherever no login session set it: ssh, containers, CI. With it set, Wayland finds
 * no compositor there and says nothing, and the layer moves on (to X11, then the loader's order), as it did.
 * The directory is what a login session would give: a fresh private one (mode 0700, so nobody else can put a
 * socket in it), removed and the variable restored once the device exists. Nothing is filtered from stderr: any
 * other message of the drivers still shows. Skipped where Deno lacks the env or write permission.
 */
async function withRuntimeDir<T>(host: Host, f: () => Promise<T>): Promise<T> {
  const KEY = "XDG_RUNTIME_DIR";
  let env: { get(): string | undefined; set(v: string | undefined): void } | null = null;
  let makeDir: (() => string) | null = null;
  let removeDir: ((d: string) => void) | null = null;
  if (host === "deno") {
    const d = (globalThis as unknown as { Deno: DenoEnvHost }).Deno;
    const granted = (desc: { name: string; variable?: string }) => d.permissions.querySync(desc).state === "granted";
    if (/^(linux|freebsd|netbsd|openbsd|android)$/.test(d.build.os) && granted({ name: "env", variable: KEY }) && granted({ name: "write" })) {
      env = { get: () => d.env.get(KEY), set: (v) => (v === undefined ? d.env.delete(KEY) : d.env.set(KEY, v)) };
      makeDir = () => d.makeTempDirSync({ prefix: "webtune-xdg-" });
      removeDir = (dir) => d.removeSync(dir);
    }
  } else if (host === "node") {
    const proc = (globalThis as unknown as { process: NodeProcess & { platform: string } }).process;
    if (/^(linux|freebsd|netbsd|openbsd|android)$/.test(proc.platform)) {
      const [fsSpec, osSpec] = ["node:fs", "node:os"]; // variables, so that bundlers never follow them
      const nodeFs = await import(/* @vite-ignore */ fsSpec);
      const { tmpdir } = await import(/* @vite-ignore */ osSpec);
      env = { get: () => proc.env[KEY], set: (v) => (v === undefined ? delete proc.env[KEY] : (proc.env[KEY] = v)) };
      makeDir = () => nodeFs.mkdtempSync(`${tmpdir()}/webtune-xdg-`);
      removeDir = (dir) => nodeFs.rmdirSync(dir);
    }
  }
  const before = env?.get();
  if (!env || before?.startsWith("/")) return f();
  let dir: string;
  try {
    dir = makeDir!();
  } catch {
    return f(); // no temporary directory to be had: the message stays, nothing else changes
  }
  env.set(dir);
  try {
    return await f();
  } finally {
    env.set(before);
    try {
      removeDir!(dir);
    } catch {
      // something was put in it after all: leave it (it is private and in the temporary directory)
    }
  }
}

function adapterInfo(adapter: GPUAdapter | null, device: GPUDevice): DeviceInfo["adapter"] {
  const i = (adapter?.info ?? (device as { adapterInfo?: GPUAdapterInfo }).adapterInfo ?? {}) as Partial<GPUAdapterInfo>;
  return {
    vendor: String(i.vendor ?? ""),
    architecture: String(i.architecture ?? ""),
    device: String(i.device ?? ""),
    description: String(i.description ?? ""),
    isFallbackAdapter: Boolean((i as { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false),
  };
}

type NodeProcess = { env: Record<string, string | undefined>; stderr: { write(s: string): void } };

async function nodeAdapter(options: DeviceOptions, tried: string[]) {
  const proc = (globalThis as unknown as { process: NodeProcess }).process;
  const spec = "webgpu"; // a variable, so that bundlers never pull Dawn into a browser build
  let mod: { create(flags: string[]): GPU; globals: object };
  try {
    mod = await import(/* @vite-ignore */ spec);
  } catch (e) {
    tried.push(`node: import("webgpu") failed (${(e as Error).message}); run \`npm install webgpu\``);
    return { adapter: null, swiftshader: false };
  }
  Object.assign(globalThis, mod.globals);
  const request = async (what: string) => {
    const root = mod.create([]);
    dawnRoots.push(root);
    const a = await root.requestAdapter({ powerPreference: options.powerPreference });
    tried.push(`node: Dawn requestAdapter() with ${what} -> ${a ? "adapter" : "null"}`);
    return a;
  };
  const icdEnv = proc.env.VK_ICD_FILENAMES;
  let adapter = await request(icdEnv ? `VK_ICD_FILENAMES=${icdEnv}` : "the system's Vulkan drivers");
  if (adapter) return { adapter, swiftshader: /swiftshader/i.test(icdEnv ?? "") };
  if (icdEnv) return { adapter: null, swiftshader: false };
  const icd = proc.env.WEBTUNE_SWIFTSHADER_ICD ?? SWIFTSHADER_ICD;
  const fsSpec = "node:fs";
  const { existsSync } = await import(/* @vite-ignore */ fsSpec);
  if (!existsSync(icd)) {
    tried.push(`node: no SwiftShader at ${icd} (set WEBTUNE_SWIFTSHADER_ICD to its vk_swiftshader_icd.json)`);
    return { adapter: null, swiftshader: false };
  }
  // The Vulkan loader reads VK_ICD_FILENAMES when Dawn creates its instance, so set it before create().
  proc.env.VK_ICD_FILENAMES = icd;
  adapter = await request(`VK_ICD_FILENAMES=${icd}`);
  if (adapter) proc.stderr.write(`webtune: no GPU adapter found; using SwiftShader (CPU Vulkan) from ${icd}\n`);
  return { adapter, swiftshader: adapter !== null };
}

function noAdapterMessage(host: Host, tried: string[]): string {
  const install =
    host === "browser"
      ? "Use a browser with WebGPU (Chrome/Edge 113+, Safari 26+, Firefox 141+ on Windows), or start Chromium with --enable-unsafe-webgpu; without a GPU, add --use-webgpu-adapter=swiftshader."
      : "Install a GPU driver with Vulkan (or Metal/D3D12) support; on a machine without a GPU install a CPU adapter: `apt-get install chromium` (SwiftShader, used by Node) or `apt-get install mesa-vulkan-drivers` (llvmpipe, used by Deno).";
  return `No WebGPU adapter found.\nTried:\n${tried.map((t) => `  - ${t}`).join("\n")}\n${install}`;
}
