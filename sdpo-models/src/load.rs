//! Loading a model and its tokenizer from a Hugging Face folder or a `.gguf` file.
