//! Saving a model as a Hugging Face folder (safetensors, config.json, tokenizer files).
