// TensorRT-LLM checkpoint layout (what `trtllm-build --checkpoint_dir` consumes; DESIGN §6).
// References: NVIDIA/TensorRT-LLM tensorrt_llm/models/modeling_utils.py (PretrainedConfig,
// QuantConfig, PretrainedModel.from_checkpoint, preprocess_weights), models/llama/config.py,
// models/llama/convert.py, models/qwen/config.py, models/gpt/config.py + convert.py;
// NVIDIA/TensorRT-Model-Optimizer modelopt/torch/export/ (tensorrt_llm_utils.py,
// layer_utils.py, postprocess.py, quant_utils.py, model_config_utils.py).
//
//   1. config.json                  PretrainedConfig.to_dict(): architecture, dtype, sizes,
//                                   mapping {world_size, tp_size, pp_size}, quantization
//                                   {quant_algo, kv_cache_quant_algo, group_size, has_zero_point,
//                                   pre_quant_scale, exclude_modules}, architecture extras.
//   2. rank{i}.safetensors          one per tensor-parallel rank i in 0..<world_size (pp = 1).
//
// Tensor names (Llama family; GPT-2 adds position_embedding and biases):
//
//   transformer.vocab_embedding.weight          [V, H]   (split on embedding_sharding_dim when
//                                                         use_parallel_embedding; rows zero-padded to
//                                                         a multiple of tp, convert.py split_embedding)
//   transformer.layers.{i}.input_layernorm.weight
//   transformer.layers.{i}.attention.qkv.weight [(q_r + 2·kv_r)·head, H]   rank r: its q heads, then
//                                                         its k heads, then its v heads; KV heads are
//                                                         repeated (repeat_interleave) when kv < tp
//   transformer.layers.{i}.attention.dense.weight [H, q·head / tp]          row-parallel
//   transformer.layers.{i}.post_layernorm.weight
//   transformer.layers.{i}.mlp.fc.weight        [I / tp, H]   = HF gate_proj   column-parallel
//   transformer.layers.{i}.mlp.gate.weight      [I / tp, H]   = HF up_proj     column-parallel
//   transformer.layers.{i}.mlp.proj.weight      [H, I / tp]   = HF down_proj   row-parallel
//   transformer.ln_f.weight
//   lm_head.weight                              [V_pad / tp, H]  (tied models: a copy of the
//                                                         embedding, as llama/convert.py writes it)
//
// Row-parallel biases are replicated, column-parallel ones split with their rows.
//
// Quantized linears (per rank, ModelOpt's split rules in postprocess.py):
//
//   FP8      weight F8_E4M3; weights_scaling_factor F32 [1] = amax/448 (qkv: one scale = max of
//            q, k, v; fc and gate share one — a different part scale is requantized to it);
//            activation_scaling_factor F32 [1] (max over the shared group)
//   FP8_PER_CHANNEL_PER_TOKEN (quantization/layers.py Fp8RowwiseLinear)
//            weight F8_E4M3; per_channel_scale F32 [out_r] (column) or [out] (row, replicated) =
//            amax_row/448; no activation scale (activations quantized per token at run time)
//   W8A8 SQ  weight I8; weights_scaling_factor F32 [out_r] (column) or [out] (row, replicated);
//            activation_scaling_factor F32 [1]; prequant_scaling_factor [in] (column: replicated,
//            row: split), in the checkpoint dtype; W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN: the same
//            without activation_scaling_factor (per-token dynamic activations)
//   W4A16    weight I8 [out_r / 2, in_r] (Int4Packing.packRowPairs of the rank's rows);
//   AWQ      weights_scaling_factor F32 [out_r, in_r / G] (column: rows split; row: group columns
//            split); prequant_scaling_factor [in] as SQ (all ones when the IR has none)
//   W4A8     as W4A16 + activation_scaling_factor F32 [1] + weights_scaling_factor_2 F32 [1]
//            = max(weight scale)·7/448
//   KV cache attention.{k_cache,v_cache}_scaling_factor F32 [1] and kv_cache_scaling_factor
//            F32 [1] = max(k, v) (model_config_utils.split_config_and_weights)

import KilnCore

/// File names and name tables of the checkpoint.
enum Layout {
    static let configFile = "config.json"
    static func rankFile(_ r: Int) -> String { "rank\(r).safetensors" }

    /// Quant algorithms the writer and reader handle (TensorRT-LLM's QuantAlgo names).
    static let quantAlgorithms = ["FP8", "FP8_PER_CHANNEL_PER_TOKEN", "W4A16_AWQ", "W4A8_AWQ", "W8A8_SQ_PER_CHANNEL", int8PerToken]
    /// INT8 SmoothQuant with per-token dynamic activations (no activation_scaling_factor).
    static let int8PerToken = "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN"
    static let kvCacheAlgorithms = ["FP8", "INT8"]

    /// HF tensors that are runtime buffers, not weights (old checkpoints carry them): skipped.
    static func isBuffer(_ name: String) -> Bool {
        name.hasSuffix(".rotary_emb.inv_freq") || name.hasSuffix(".attn.bias") || name.hasSuffix(".attn.masked_bias")
    }
}
