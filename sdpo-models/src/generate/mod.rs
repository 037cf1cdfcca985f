//! Batched sampling with a KV cache: temperature, top-p, top-k, min-p, stop ids, seeded.
