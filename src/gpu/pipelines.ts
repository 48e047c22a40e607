// Compute pipelines, compiled once per (shader file, entry point, specialization) and cached.
// Binding layouts and uniform layouts are read from the WGSL itself: a launcher names its buffers and
// params, never a binding number or a byte offset.
import { WGSL } from "./shaders.generated.ts";

/** Values for `const NAME = ...;` declarations at the top level of a shader (the small template). */
export type Specialization = Record<string, number | boolean>;

interface Binding {
  binding: number;
  name: string;
  kind: "uniform" | "read" | "read_write";
  type: string;
}

interface Field {
  name: string;
  type: "u32" | "i32" | "f32";
}

export interface Pipeline {
  label: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  /** Bindings the entry point uses (directly or through the functions it calls). */
  bindings: Binding[];
  /** Fields of the uniform struct, in order (each a 4-byte scalar). */
  params: Field[];
  paramBytes: number;
  /**
   * Settles once creation is checked, to the compile error (with the WGSL lines) if there is one: a
   * dispatch's error waits for it, so the cause is reported rather than "invalid pipeline".
   */
  ready: Promise<Error | null>;
  /** Set once `ready` found a compile error; later launches of this pipeline throw it at once. */
  error?: Error;
}

export class PipelineCache {
  private cache = new Map<string, Pipeline>();

  constructor(private readonly device: GPUDevice) {}

  get(family: string, entry: string, consts: Specialization = {}): Pipeline {
    const key = `${family}.${entry}${specKey(consts)}`;
    let p = this.cache.get(key);
    if (!p) this.cache.set(key, (p = this.build(family, entry, consts, key)));
    return p;
  }

  private build(family: string, entry: string, consts: Specialization, label: string): Pipeline {
    const template = WGSL[family];
    if (template === undefined) throw new Error(`No shader shaders/${family}.wgsl (have: ${Object.keys(WGSL).join(", ")})`);
    const code = specialize(template, consts, family);
    const shader = reflect(code, entry, family);
    const device = this.device;
    device.pushErrorScope("validation");
    const module = device.createShaderModule({ code, label: `shaders/${family}.wgsl` });
    const layout = device.createBindGroupLayout({
      label,
      entries: shader.bindings.map((b) => ({
        binding: b.binding,
        visibility: 4, // GPUShaderStage.COMPUTE
        buffer: { type: b.kind === "uniform" ? "uniform" : b.kind === "read" ? "read-only-storage" : "storage" },
      })),
    });
    const pipeline = device.createComputePipeline({
      label,
      layout: device.createPipelineLayout({ bindGroupLayouts: [layout], label }),
      compute: { module, entryPoint: entry },
    });
    const p: Pipeline = { label, pipeline, layout, ready: Promise.resolve(null), ...shader };
    p.ready = device.popErrorScope().then(async (err) => {
      if (!err) return null;
      const info = await module.getCompilationInfo();
      const lines = code.split("\n");
      // Some implementations (wgpu) give no position: line 0.
      const msgs = info.messages.map((m) =>
        m.lineNum ? `  ${m.type} at line ${m.lineNum}: ${m.message}\n    | ${lines[m.lineNum - 1] ?? ""}` : `  ${m.type}: ${m.message}`,
      );
      p.error = new Error(`Pipeline ${label} failed: ${err.message}\n${msgs.join("\n")}`);
      return p.error;
    });
    return p;
  }
}

function specKey(consts: Specialization): string {
  const keys = Object.keys(consts).sort();
  return keys.length ? `[${keys.map((k) => `${k}=${+consts[k]}`).join(",")}]` : "";
}

/** Replaces the value of each named top-level `const NAME: T = value;` (the file keeps valid defaults). */
export function specialize(code: string, consts: Specialization, family: string): string {
  let out = code;
  for (const [name, value] of Object.entries(consts)) {
    const re = new RegExp(`^const\\s+${name}\\s*:\\s*(\\w+)\\s*=\\s*[^;]+;`, "m");
    const m = re.exec(out);
    if (!m) throw new Error(`shaders/${family}.wgsl has no top-level \`const ${name}: T = ...;\` to specialize`);
    out = out.replace(re, `const ${name}: ${m[1]} = ${literal(m[1]!, value)};`);
  }
  return out;
}

function literal(type: string, v: number | boolean): string {
  switch (type) {
    case "bool":
      return v ? "true" : "false";
    case "u32":
      return `${Math.trunc(+v)}u`;
    case "i32":
      return `${Math.trunc(+v)}i`;
    case "f32": {
      const s = String(+v);
      return /[.e]/.test(s) ? s : `${s}.0`;
    }
    default:
      throw new Error(`cannot specialize a const of type ${type}`);
  }
}

/** The bindings an entry point uses and its uniform struct, from the WGSL source. */
function reflect(code: string, entry: string, family: string): Omit<Pipeline, "label" | "pipeline" | "layout" | "ready" | "error"> {
  const src = code.replace(/\/\/[^\n]*/g, "");
  const all: Binding[] = [];
  for (const m of src.matchAll(/@group\(0\)\s*@binding\((\d+)\)\s*var(?:<([^>]+)>)?\s+(\w+)\s*:\s*([^;]+);/g)) {
    const space = (m[2] ?? "").replace(/\s/g, "");
    const kind = space === "uniform" ? "uniform" : space === "storage,read_write" ? "read_write" : "read";
    all.push({ binding: +m[1]!, kind, name: m[3]!, type: m[4]!.trim() });
  }
  // Function bodies by brace matching, then the transitive closure of names used from the entry point.
  const bodies = new Map<string, string>();
  for (const m of src.matchAll(/\bfn\s+(\w+)\s*\(/g)) {
    let i = src.indexOf("{", m.index);
    const start = i;
    let depth = 0;
    for (; i < src.length; i++) {
      if (src[i] === "{") depth++;
      else if (src[i] === "}" && --depth === 0) break;
    }
    bodies.set(m[1]!, src.slice(start, i + 1));
  }
  if (!bodies.has(entry)) throw new Error(`shaders/${family}.wgsl has no entry point \`${entry}\``);
  const used = new Set<string>();
  const seen = new Set<string>();
  const visit = (fn: string) => {
    if (seen.has(fn)) return;
    seen.add(fn);
    for (const id of bodies.get(fn)!.match(/(?<![.\w])[A-Za-z_]\w*/g) ?? []) {
      if (bodies.has(id)) visit(id);
      else used.add(id);
    }
  };
  visit(entry);
  const bindings = all.filter((b) => used.has(b.name));
  const uniform = bindings.find((b) => b.kind === "uniform");
  let params: Field[] = [];
  if (uniform) {
    const m = new RegExp(`struct\\s+${uniform.type}\\s*\\{([^}]*)\\}`).exec(src);
    if (!m) throw new Error(`shaders/${family}.wgsl: struct ${uniform.type} not found`);
    params = m[1]!
      .split(",")
      .map((f) => f.trim())
      .filter(Boolean)
      .map((f) => {
        const [name, type] = f.split(":").map((s) => s.trim());
        if (type !== "u32" && type !== "i32" && type !== "f32") {
          throw new Error(`shaders/${family}.wgsl: uniform field ${name} has type ${type}; only u32/i32/f32 scalars`);
        }
        return { name: name!, type };
      });
  }
  return { bindings, params, paramBytes: Math.ceil((params.length * 4) / 16) * 16 };
}
