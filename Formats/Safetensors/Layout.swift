// safetensors byte layout: see Sources/KilnCore/Sources/KilnCore/SafetensorsFile.swift (numbered
// there, with the link to the spec); sharded folders (`model.safetensors.index.json` + shards):
// SafetensorsCheckpoint.swift beside it. Both live in KilnCore because other format plugins
// (TensorRT-LLM rank files, unified HF checkpoints) read and write safetensors too, and formats
// do not import each other.
