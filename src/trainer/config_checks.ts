// The pieces every `trl sft` key table is written with: value checks, and how values are shown and read
// from strings.

/** null when the value is allowed, else what is allowed ("an integer ≥ 1"). */
export type Check = (v: unknown) => string | null;

export const isInt = (v: unknown): v is number => Number.isInteger(v);
export const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v);
export const isDict = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

export const bool: Check = (v) => (typeof v === "boolean" ? null : "true or false");
export const str: Check = (v) => (typeof v === "string" ? null : "a string");
export const nonEmptyStr: Check = (v) => (typeof v === "string" && v.length > 0 ? null : "a non-empty string");
export const dict: Check = (v) => (isDict(v) ? null : "a mapping (object)");
export const int = (min: number): Check => (v) => (isInt(v) && v >= min ? null : `an integer ≥ ${min}`);
export const num = (min: number, max = Infinity, openMin = false): Check => (v) =>
  isNum(v) && (openMin ? v > min : v >= min) && v <= max
    ? null
    : `a number ${openMin ? ">" : "≥"} ${min}${max < Infinity ? ` and ≤ ${max}` : ""}`;
/** "\"a\", \"b\"": allowed values, as an error lists them. */
export const quoted = (values: readonly string[]): string => values.map((x) => JSON.stringify(x)).join(", ");
export const oneOf = (values: readonly string[]): Check => (v) => (typeof v === "string" && values.includes(v) ? null : `one of ${quoted(values)}`);
export const nullable = (c: Check): Check => (v) => (v === null ? null : ((r) => r && `${r} or null`)(c(v)));
/** A number in [0, 1): Adam's betas, dropout. */
export const unitInterval: Check = (v) => (isNum(v) && v >= 0 && v < 1 ? null : "a number in [0, 1)");

/** A value as a config file spells it: strings quoted, lists and mappings as JSON. */
export function show(v: unknown): string {
  return typeof v === "string" || Array.isArray(v) || isDict(v) ? JSON.stringify(v) : String(v);
}

/** Whether a value leaves its key off: null, false, 0, "", [], {} or the key's own inactive default. */
export function isInactive(v: unknown, inactive: unknown): boolean {
  if (v === null || v === undefined || v === false || v === 0 || v === "" || v === inactive) return true;
  if (Array.isArray(v)) return v.length === 0;
  return isDict(v) && Object.keys(v).length === 0;
}

/** "2e-5" → 2e-5, "true" → true, "None" → null: for values that arrive as strings (a command line). */
export function coerced(v: string): unknown {
  if (/^(true|True)$/.test(v)) return true;
  if (/^(false|False)$/.test(v)) return false;
  if (/^(null|None|none|~)$/.test(v)) return null;
  const n = Number(v);
  return v.trim() !== "" && Number.isFinite(n) ? n : v;
}

/**
 * `raw` checked by `check`, or, with `coerce` and a string that fails as given, read as the number, boolean or
 * null it spells. Returns the value to keep, or a problem naming the key, the value and what is allowed.
 */
export function checked(check: Check, key: string, raw: unknown, coerce: boolean | undefined): { value: unknown } | { problem: string } {
  const why = check(raw);
  if (!why) return { value: raw };
  if (coerce && typeof raw === "string") {
    const value = coerced(raw);
    if (!check(value)) return { value };
  }
  return { problem: `${key}=${show(raw)} is not allowed: expected ${why}` };
}
