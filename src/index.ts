// webtune: fine-tune language models with WebGPU. The public API.
// The API's types name WebGPU's (GPUDevice, GPUBuffer…): the built lib/index.d.ts brings them to users' TypeScript.
/// <reference types="@webgpu/types" preserve="true" />
export { getDevice, deviceInfo, DeviceLostError, deviceLost, type DeviceInfo, type DeviceOptions } from "./gpu/device.ts";
export { Tensor, type DType, type TensorOptions } from "./tensor/tensor.ts";
export { no_grad, is_grad_enabled } from "./tensor/autograd.ts";
export { tidy, keep } from "./tensor/scope.ts";
export { memoryStats, flush, sync } from "./tensor/memory.ts";
export { WEIGHT_FORMATS, isTrainable, isPacked, formatShapeError, missingFeature, type WeightFormat, type FormatTraits } from "./tensor/format.ts";
export { quantize, dequantize, isPackedFormat, GGML_TYPE_FORMATS, NF4_CODE, FP4_CODE, type PackedFormat } from "./tensor/quant.ts";
export { add, sub, mul, div, scale, neg, exp, log, silu, gelu, softcap } from "./ops/elementwise.ts";
export { sum, mean, max, logsumexp, softmax } from "./ops/reduce.ts";
export { reshape, transpose, slice, concat } from "./ops/layout.ts";
export { linear, matmul, type MatmulOptions } from "./ops/matmul.ts";
export { tuneMatmul, type MatmulConfig, type MatmulTuning } from "./kernels/matmul.ts";
export { rmsnorm } from "./ops/rmsnorm.ts";
export { rope, RotaryEmbedding, ropeInvFreq, ropeParameters, ropeScalingTypes, type RotaryConfig, type RopeScaling, type RopeParameters } from "./ops/rope.ts";
export { swiglu, geglu } from "./ops/swiglu.ts";
export { embedding, type EmbeddingOptions } from "./ops/embedding.ts";
export { attention, type AttentionOptions } from "./ops/attention.ts";
export {
  fused_linear_cross_entropy,
  IGNORE_INDEX,
  type FusedCrossEntropyOptions,
  type CrossEntropyOutput,
  type CrossEntropyMetrics,
} from "./ops/cross_entropy.ts";
export { lora_linear, initLoraWeights, type LoraLinearOptions } from "./ops/lora.ts";
export { Optimizer, type OptimizerStateDict, type ParamGroup, type ParamState } from "./nn/optimizer.ts";
export { AdamW, type AdamWParamGroup, type AdamWState, type AdamWStateDict } from "./nn/adamw.ts";
export { clip_grad_norm_ } from "./nn/grad_norm.ts";
export { optimizerNames } from "./nn/optim.ts";
export { checkpoint } from "./nn/checkpoint.ts";
export { AutoModelForCausalLM, type PretrainedOptions } from "./models/auto.ts";
export { LlamaForCausalLM } from "./models/llama.ts";
export type { CausalLM, ForwardInputs, CausalLMOutput } from "./models/causal_lm.ts";
export { parseConfig, registerArchitecture, SUPPORTED_ARCHITECTURES, CONFIG_LIMITS } from "./models/config.ts";
export type { Architecture, LlamaFamilyConfig, ModuleSpec, WeightSpec, WeightTransforms, LayerType, RopeSpec } from "./models/architecture.ts";
export { Llama } from "./models/architectures/llama.ts";
export { Mistral } from "./models/architectures/mistral.ts";
export { Qwen2 } from "./models/architectures/qwen2.ts";
export { Qwen3 } from "./models/architectures/qwen3.ts";
export { Gemma2 } from "./models/architectures/gemma2.ts";
export { Gemma3 } from "./models/architectures/gemma3.ts";
export { SmolLM3 } from "./models/architectures/smollm3.ts";
export { Phi3 } from "./models/architectures/phi3.ts";
export { weightBytes, weightMemory, ggufWeightBytes, ggufWeightMemory, loadFormats, linearsLabel, type LinearFormat, type VocabFormat, type WeightMemory } from "./models/memory.ts";
export { MODEL_PRESETS, presetConfig, presetSize, parameterCount, type ModelPreset, type ModelSize } from "./models/presets.ts";
export { parseQuantizationConfig, type BitsAndBytesConfig, type Quantization, type QuantFormat } from "./models/quantization.ts";
export { GGUFFile, GGUFWeights, ggufConfig, ggufTokenizer, GGUF_LIMITS, type GGUFValue, type GGUFTensorInfo } from "./models/gguf.ts";
export { GGUFWriter, loraGGUF, loraGGUFFromFiles, type LoraGGUFInput } from "./models/gguf_writer.ts";
export { get_peft_model, PeftModel, type LoraConfig } from "./models/peft.ts";
export { openSource, type ModelLocation } from "./io/open.ts";
export type { ModelSource } from "./io/source.ts";
export type { SourceOptions } from "./io/http.ts";
export { writeSafetensors, openWeights, SafetensorsFile } from "./models/safetensors.ts";
export { AutoTokenizer, PreTrainedTokenizer, CHAT_TEMPLATE_LIMITS } from "./data/tokenizer.ts";
export { kv_cache_write, attention_cached, type CachedAttentionOptions } from "./ops/kv_cache.ts";
export { sampleToken, createRng, type SamplingOptions, type Rng } from "./models/sampling.ts";
export { generate, type GenerateOptions } from "./models/generate.ts";
export { splitRows } from "./ops/row_blocks.ts";
export { pack_dataset, packStream, DEFAULT_PACKING_WINDOW, type PackedRow, type PackInputRow, type PackingStrategy, type PackStreamOptions } from "./data/packing.ts";
export { DataCollatorForLanguageModeling, type CollatedBatch, type CollatorExample, type DataCollatorForLanguageModelingOptions } from "./data/collator.ts";
export { openStorage, rotateCheckpoints, FileSystemStorage, IndexedDBStorage, type CheckpointStorage, type StorageLocation } from "./trainer/storage.ts";
export { SFTTrainer, TrainingDivergedError, type SFTTrainerInit, type TrainerCallback, type TrainerState, type TrainerControl, type TrainOutput } from "./trainer/trainer.ts";
export { sftConfig, baseWeightsDtype, isSecretKey, trainingArgsJSON, withoutSecrets, reportIntegrations, REPORT_TO_INTEGRATIONS, SFT_DEFAULTS, SFTConfigError, type SFTConfig, type ResolvedSFTConfig } from "./trainer/config.ts";
export { loadSFTConfig, splitConfig, type LoadedSFTConfig } from "./trainer/config_file.ts";
export { exportTRLConfig, type ExportTRLConfigOptions } from "./trainer/export_config.ts";
export { TensorBoardCallback, SummaryWriter, type TensorBoardFile, type TensorBoardCallbackOptions, type SummaryWriterOptions } from "./trainer/tensorboard.ts";
export { loadDataset, concatenate, Dataset, isDataFile, DEFAULT_MAX_LINE_BYTES, type DatasetSource, type DataFile, type DataFormat, type LoadDatasetOptions, type Row } from "./data/sources.ts";
export {
  loadSFTDatasets, loadDatasetByName, loadDatasetDict, getDataset, trainTestSplit, selectColumns, BUILDERS, DATASET_CONFIG_KEYS,
  type DataFilesArg, type DatasetDict, type HubDatasetOptions, type LoadDatasetArgs, type SFTDatasetArgs, type SFTDatasetsOptions,
} from "./data/hub_datasets.ts";
export { csvRows, textRows, NA_VALUES, type CsvOptions, type TextOptions } from "./data/csv_text.ts";
export { prepareDataset, truncate_dataset, PreparedDataset, type PreparedExample, type PrepareOptions } from "./data/prepare.ts";
export { is_conversational, maybe_convert_to_chatml } from "./data/formats.ts";
export { FACTS } from "./data/facts.ts";
export { DEFAULT_TINY_CONFIG, type TinyModelOptions } from "./models/tiny.ts";
export { tinyModelFiles, tinyModelSource } from "./data/tiny.ts";
export { sftMain, webtuneMain, defaultHost, type CliHost, type CliProgram } from "./trainer/cli.ts";
