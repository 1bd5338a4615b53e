// Unified Hugging Face quantized checkpoint (what TensorRT-LLM's PyTorch flow, vLLM and SGLang load;
// DESIGN §6). Reference: NVIDIA/TensorRT-Model-Optimizer modelopt/torch/export/unified_export_hf.py
// (requantize_resmooth_fused_llm_layers, _export_quantized_weight, export_hf_checkpoint),
// quant_utils.py (pack_int4_in_uint8, to_quantized_weight, postprocess_state_dict,
// fuse_prequant_layernorm, preprocess_linear_fusion, get_quant_config, process_layer_quant_config),
// convert_hf_config.py (convert_hf_quant_config_format).
//
//   1. config.json             the model's config + "quantization_config" (appended last):
//                              {config_groups (FP8 only), ignore, quant_algo, kv_cache_scheme,
//                               producer, quant_method: "modelopt"}
//   2. hf_quant_config.json    {"producer": {"name", "version"},
//                               "quantization": {"quant_algo", "kv_cache_quant_algo",
//                               ["group_size", "has_zero_point", "pre_quant_scale" for AWQ],
//                               "exclude_modules"}}
//   3. model.safetensors       (or shards + model.safetensors.index.json) with HF names:
//
//   per quantized linear X:
//     FP8        X.weight F8_E4M3 [out, in]   X.weight_scale F32 [] = amax/448   X.input_scale F32 []
//                (no fusion: q, k, v keep their own scales — FP8 is excluded from
//                requantize_resmooth_fused_llm_layers)
//     FP8_PER_CHANNEL_PER_TOKEN
//                X.weight F8_E4M3 [out, in]   X.weight_scale F32 [out] = amax_row/448, no input_scale
//                (activations quantized per token at run time; vLLM's ModelOptFp8PcPtLinearMethod)
//     INT8 SQ    X.weight I8 [out, in]        X.weight_scale F32 [out]           X.input_scale F32 []
//                X.pre_quant_scale [in] on every linear; modules sharing an input (q/k/v, gate/up)
//                share one pre_quant_scale and input_scale = max (preprocess_linear_fusion);
//                W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN: the same without input_scale (per-token dynamic)
//   2:4 sparse float model: hf_quant_config.json {"quantization": {"quant_algo": null, "sparsity": "2:4", ...}}
//                and a config.json without quantization_config (dense weights with zeros)
//     INT4 AWQ   X.weight U8 [out/2, in]: byte[k, j] = (q[2k, j] & 0xF) | (q[2k+1, j] << 4)
//                X.weight_scale F32 [out, in/G] = amax/7; X.pre_quant_scale only on o_proj / down_proj:
//                for q/k/v and gate/up it is folded into input_layernorm / post_attention_layernorm
//                (fuse_prequant_layernorm: norm · pre_quant_scale)
//     W4A8 AWQ   as INT4 AWQ + X.input_scale F32 [] + X.weight_scale_2 F32 [] = max(weight_scale)·7/448
//   KV cache     self_attn.k_proj.k_scale, self_attn.v_proj.v_scale F32 [] (postprocess_state_dict;
//                ModelOpt clamps FP8 values to ≥ 1 when it exports — the IR value is written as is)
//   Excluded modules (lm_head by default) keep their float dtype; tied embeddings write no lm_head.

enum Layout {
    static let configFile = "config.json"
    static let quantConfigFile = "hf_quant_config.json"
    static let weightScale = "weight_scale"
    static let weightScale2 = "weight_scale_2"
    static let inputScale = "input_scale"
    static let preQuantScale = "pre_quant_scale"
    static let quantAlgorithms = ["FP8", "FP8_PER_CHANNEL_PER_TOKEN", "W4A16_AWQ", "W4A8_AWQ", "W8A8_SQ_PER_CHANNEL",
                                  "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN"]
    static let kvCacheAlgorithms = ["FP8", "INT8"]
    /// save_pretrained's default shard size.
    static let defaultMaxShardBytes = 5_000_000_000
    /// Module names that are linear layers (for the exclude list of float ones).
    static let linearSuffixes = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "lm_head", "c_attn", "c_proj", "c_fc"]
    /// Side files copied along.
    static let sideFiles = [
        "generation_config.json", "tokenizer.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json",
        "vocab.txt", "merges.txt", "vocab.json", "added_tokens.json", "chat_template.jinja",
    ]
}
