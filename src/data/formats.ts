// The dataset formats TRL's SFTTrainer takes, told apart per row as TRL tells them apart (trl/data_utils.py:
// is_conversational, maybe_convert_to_chatml, and the checks of
// SFTTrainer._prepare_dataset's tokenize step):
//
//   text                        {text: string}  (the field is dataset_text_field)
//   messages                    {messages: [{role, content, tool_calls?}], tools?}
//   prompt_completion           {prompt: string, completion: string}
//   conversational_prompt_completion
//                               {prompt: [messages], completion: [messages], tools?}
//   conversations               {conversations: [{from, value}]}  → messages
//   pretokenized                {input_ids: number[], labels? | assistant_masks? | completion_mask?}
//
// Every row may also carry `tools` (a list of JSON schemas, or its JSON string) and `chat_template_kwargs`
// (extra template variables), both passed to the chat template. A row that fits none is an error naming the
// fields it has and listing each format's fields.
import { describe, rowSource, type Row } from "./sources.ts";
import type { ChatMessage, ChatTool } from "./tokenizer.ts";

export type RowFormat = "text" | "messages" | "prompt_completion" | "conversational_prompt_completion" | "conversations" | "pretokenized";

/** Each format's fields, for messages. */
export function formatList(dataset_text_field = "text"): string {
  return [
    `{${dataset_text_field}: string} (language modeling; the field is dataset_text_field)`,
    `{messages: [{role, content}, …]} (conversational; optional tools column)`,
    `{prompt: string, completion: string} (prompt-completion)`,
    `{prompt: [messages], completion: [messages]} (conversational prompt-completion)`,
    `{conversations: [{from, value}, …]} (ShareGPT style, converted to messages)`,
    `{input_ids: number[], labels? | assistant_masks? | completion_mask?} (pre-tokenized)`,
  ]
    .map((f) => `  - ${f}`)
    .join("\n");
}

/** "row 3 (data.jsonl:5)": a row's index and where it came from. */
export function rowName(index: number, row?: unknown): string {
  const where = rowSource(row);
  return where ? `row ${index} (${where})` : `row ${index}`;
}

/** TRL's remove_none_values: drops keys whose value is null, recursively (Arrow/Parquet fill missing struct fields with null). */
export function remove_none_values<T>(value: T): T {
  if (Array.isArray(value)) return value.map((v) => (v && typeof v === "object" ? remove_none_values(v) : v)) as T;
  if (value && typeof value === "object" && !ArrayBuffer.isView(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (v === null || v === undefined) continue;
      out[k] = v && typeof v === "object" ? remove_none_values(v) : v;
    }
    return out as T;
  }
  return value;
}

/** Whether `value` is a list of chat messages: an array whose first element is an object with a role (TRL's test). */
function isMessageList(value: unknown): value is ChatMessage[] {
  return Array.isArray(value) && value.length > 0 && !!value[0] && typeof value[0] === "object" && !Array.isArray(value[0]) && "role" in value[0];
}

/** TRL's is_conversational: prompt, completion, messages (chosen, rejected) hold lists of {role, …} messages. */
export function is_conversational(row: Row): boolean {
  for (const key of ["prompt", "chosen", "rejected", "completion", "messages"]) {
    if (key in row) return isMessageList(row[key]);
  }
  return false;
}

/** ShareGPT speaker names and the ChatML roles they become. */
export const ROLE_MAPPINGS: Record<string, string> = { human: "user", user: "user", gpt: "assistant", assistant: "assistant", system: "system" };

/**
 * TRL's maybe_convert_to_chatml: in prompt/completion/messages/conversations message lists, "from" becomes
 * "role" (human → user, gpt → assistant, system stays; other names kept as they are) and "value" becomes
 * "content"; "conversations" is renamed "messages". Returns a new row; the input is not changed.
 */
export function maybe_convert_to_chatml(row: Row): Row {
  const out: Row = { ...row };
  for (const key of ["prompt", "completion", "chosen", "rejected", "messages", "conversations"]) {
    const list = out[key];
    if (!Array.isArray(list)) continue;
    out[key] = list.map((m) => {
      if (!m || typeof m !== "object" || Array.isArray(m)) return m;
      const msg: Record<string, unknown> = { ...m };
      if ("from" in msg) {
        const from = msg.from;
        delete msg.from;
        msg.role = typeof from === "string" ? (ROLE_MAPPINGS[from.toLowerCase()] ?? from) : from;
      }
      if ("value" in msg) {
        msg.content = msg.value;
        delete msg.value;
      }
      return msg;
    });
  }
  if ("conversations" in out) {
    out.messages = out.conversations;
    delete out.conversations;
  }
  return out;
}

/** A row's tools: the list, a JSON string of it (parsed, as TRL does), or null. */
export function rowTools(row: Row, name: string): ChatTool[] | null {
  let tools = row.tools;
  if (tools === undefined || tools === null) return null;
  if (typeof tools === "string") {
    try {
      tools = JSON.parse(tools);
    } catch (e) {
      throw new Error(`${name}: "tools" is a string but not valid JSON: ${(e as Error).message}`);
    }
  }
  if (!Array.isArray(tools)) throw new Error(`${name}: "tools" must be a list of JSON schemas (or its JSON string), got ${describe(tools)}`);
  return tools as ChatTool[];
}

/** A row's chat_template_kwargs (extra template variables), or {}. */
export function rowTemplateKwargs(row: Row, name: string): Record<string, unknown> {
  const k = row.chat_template_kwargs;
  if (k === undefined || k === null) return {};
  if (typeof k !== "object" || Array.isArray(k)) throw new Error(`${name}: "chat_template_kwargs" must be an object, got ${describe(k)}`);
  return k as Record<string, unknown>;
}

function checkMessages(value: unknown, field: string, name: string): ChatMessage[] {
  if (!Array.isArray(value) || value.length === 0) throw new Error(`${name}: "${field}" must be a non-empty list of messages ({role, content}), got ${Array.isArray(value) ? "an empty list" : describe(value)}`);
  value.forEach((m, i) => {
    if (!m || typeof m !== "object" || Array.isArray(m)) throw new Error(`${name}: ${field}[${i}] must be a message object ({role, content}), got ${describe(m)}`);
    const msg = m as Record<string, unknown>;
    if (typeof msg.role !== "string") throw new Error(`${name}: ${field}[${i}] has no string "role" (its fields: ${Object.keys(msg).join(", ") || "none"})`);
    if (!("content" in msg) && !("tool_calls" in msg)) throw new Error(`${name}: ${field}[${i}] (role "${msg.role}") has neither "content" nor "tool_calls"`);
  });
  return value as ChatMessage[];
}

function checkIds(value: unknown, field: string, name: string, length?: number): number[] {
  if (!Array.isArray(value)) throw new Error(`${name}: "${field}" must be a list of integers, got ${describe(value)}`);
  for (let i = 0; i < value.length; i++) {
    if (!Number.isInteger(value[i])) throw new Error(`${name}: ${field}[${i}] must be an integer, got ${JSON.stringify(value[i]) ?? describe(value[i])}`);
  }
  if (length !== undefined && value.length !== length) throw new Error(`${name}: "${field}" has ${value.length} entries but input_ids has ${length}: they must be the same length`);
  return value as number[];
}

/** A row told apart: its format and the fields that format reads, checked. */
export type ParsedRow =
  | { format: "text"; text: string }
  | { format: "messages"; messages: ChatMessage[]; tools: ChatTool[] | null; kwargs: Record<string, unknown> }
  | { format: "prompt_completion"; prompt: string; completion: string }
  | { format: "conversational_prompt_completion"; prompt: ChatMessage[]; completion: ChatMessage[]; tools: ChatTool[] | null; kwargs: Record<string, unknown> }
  | { format: "pretokenized"; input_ids: number[]; labels?: number[]; assistant_masks?: number[]; completion_mask?: number[] };

/**
 * Tells a row's format apart (after maybe_convert_to_chatml, so "conversations" rows arrive as messages) and
 * checks its fields. In TRL's order: input_ids (pre-tokenized), then prompt (prompt-completion, conversational
 * when the prompt is a list of messages), then messages, then dataset_text_field.
 */
export function parseRow(row: Row, name: string, dataset_text_field = "text"): ParsedRow {
  if ("input_ids" in row) {
    const input_ids = checkIds(row.input_ids, "input_ids", name);
    const out: ParsedRow = { format: "pretokenized", input_ids };
    for (const f of ["labels", "assistant_masks", "completion_mask"] as const) {
      if (row[f] !== undefined && row[f] !== null) out[f] = checkIds(row[f], f, name, input_ids.length);
    }
    return out;
  }
  if ("prompt" in row || "completion" in row) {
    if (!("prompt" in row) || !("completion" in row)) {
      const has = "prompt" in row ? "prompt" : "completion";
      throw new Error(
        `${name} has "${has}" but no "${has === "prompt" ? "completion" : "prompt"}" (its fields: ${Object.keys(row).join(", ")}). ` +
          `SFT trains on prompt-completion pairs; prompt-only rows are for generation-based trainers. The formats a row can have:\n${formatList(dataset_text_field)}`,
      );
    }
    const { prompt, completion } = row;
    if (typeof prompt === "string" && typeof completion === "string") return { format: "prompt_completion", prompt, completion };
    if (Array.isArray(prompt) && Array.isArray(completion)) {
      return {
        format: "conversational_prompt_completion",
        prompt: checkMessages(prompt, "prompt", name),
        completion: checkMessages(completion, "completion", name),
        tools: rowTools(row, name),
        kwargs: rowTemplateKwargs(row, name),
      };
    }
    throw new Error(
      `${name}: "prompt" is ${describe(prompt)} and "completion" is ${describe(completion)}; both must be strings ` +
        `(prompt-completion) or both lists of messages (conversational prompt-completion)`,
    );
  }
  if ("messages" in row) {
    return { format: "messages", messages: checkMessages(row.messages, "messages", name), tools: rowTools(row, name), kwargs: rowTemplateKwargs(row, name) };
  }
  if (dataset_text_field in row) {
    const text = row[dataset_text_field];
    if (typeof text !== "string") throw new Error(`${name}: "${dataset_text_field}" (dataset_text_field) must be a string, got ${describe(text)}`);
    return { format: "text", text };
  }
  const fields = Object.keys(row);
  const hint =
    "conversations" in row
      ? ` ("conversations" must be a list of {from, value} messages)`
      : dataset_text_field !== "text" && "text" in row
        ? ` (it has "text", but dataset_text_field is "${dataset_text_field}")`
        : "";
  throw new Error(
    `${name} has the fields {${fields.join(", ")}}, which fit no dataset format${hint}. A row must be one of:\n${formatList(dataset_text_field)}` +
      `\nOr pass a formatting_func that turns each row into text.`,
  );
}
