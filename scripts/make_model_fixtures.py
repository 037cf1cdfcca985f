#!/usr/bin/env python3
"""Build tiny random Hugging Face models and reference logits for sdpo-models parity tests.

Command (from the repository root; needs pip `torch`, `transformers`, `safetensors`):

    python3 scripts/make_model_fixtures.py sdpo-models/tests/fixtures/models

Each model is written with `save_pretrained` into `<out>/<name>/` (config.json +
safetensors) and its reference data into `<out>/<name>/reference.safetensors`:

- `ids`          int64 [1, S]     one unpadded sequence
- `logits`       f32   [1, S, V]  transformers' logits for `ids`
- `batch_ids`    int64 [3, T]     a left-padded batch (pad id 0)
- `batch_mask`   int64 [3, T]     its attention mask (1 = real token)
- `batch_logits` f32   [3, T, V]  transformers' logits for the batch, with the
                                  attention mask and position ids = cumsum(mask) - 1
                                  (clamped at 0), as HF computes them for left padding

The models are seeded and deterministic. Weights are drawn larger than the HF
initializer (and norms / biases are perturbed away from 1 / 0) so that every
tensor influences the logits and a loading mistake cannot hide. When a model is
stored in half precision, the reference logits are computed from the rounded
weights (cast back to f32), which is exactly what the Rust loader sees.
The Rust tests never run Python; rerun this script only to change the fixtures.
"""

import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

VOCAB = 256
COMMON = dict(
    vocab_size=VOCAB,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    rms_norm_eps=1e-6,
    attn_implementation="eager",
)

# name -> (config class, model class, config kwargs, storage dtype, save kwargs)
MODELS = {
    # Qwen2: q/k/v biases, untied head, weights stored as bf16.
    "qwen2_bf16": (
        Qwen2Config,
        Qwen2ForCausalLM,
        dict(tie_word_embeddings=False, rope_theta=1_000_000.0),
        torch.bfloat16,
        {},
    ),
    # Llama with tied embeddings (no lm_head.weight), stored sharded.
    "llama_tied_sharded": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(tie_word_embeddings=True),
        torch.float32,
        dict(max_shard_size="150KB"),
    ),
    # Llama 3.x rope scaling; original context chosen so that the test positions
    # and head_dim 16 cover the low, medium and high frequency bands.
    "llama3_rope": (
        LlamaConfig,
        LlamaForCausalLM,
        dict(
            tie_word_embeddings=False,
            rope_theta=500_000.0,
            rope_scaling=dict(
                rope_type="llama3",
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
        ),
        torch.float32,
        {},
    ),
    # Qwen3: per-head q/k RMSNorm, explicit head_dim != hidden / heads, f16 storage.
    "qwen3_f16": (
        Qwen3Config,
        Qwen3ForCausalLM,
        dict(tie_word_embeddings=False, head_dim=32),
        torch.float16,
        {},
    ),
    # Mistral with a sliding window shorter than the test sequences.
    "mistral_window": (
        MistralConfig,
        MistralForCausalLM,
        dict(tie_word_embeddings=False, sliding_window=5),
        torch.float32,
        {},
    ),
}


def perturb_(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Draw every parameter so that each one visibly moves the logits."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if "norm" in name:
                p.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                p.copy_(0.2 * noise)
            elif "embed_tokens" in name:
                p.copy_(1.0 * noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def build(out: Path, name: str, spec, seed: int) -> None:
    cfg_cls, model_cls, kwargs, dtype, save_kwargs = spec
    gen = torch.Generator().manual_seed(seed)
    config = cfg_cls(**COMMON, **kwargs)
    torch.manual_seed(seed)
    model = model_cls(config).eval()
    perturb_(model, gen)
    # Round to the storage dtype, then compute the reference in f32 from the rounded weights.
    model = model.to(dtype)
    folder = out / name
    if folder.exists():
        shutil.rmtree(folder)
    model.save_pretrained(folder, safe_serialization=True, **save_kwargs)
    # Rebuild in f32 from the rounded weights: `.to(dtype)` also rounds the non-persistent
    # RoPE `inv_freq` buffer, which a loader recomputes from the config instead.
    rounded = {k: v.to(torch.float32) for k, v in model.state_dict().items()}
    model = model_cls(config).eval()
    model.load_state_dict(rounded)

    ids = torch.randint(1, VOCAB, (1, 12), generator=gen)
    lengths = [9, 5, 2]
    t = max(lengths)
    batch_ids = torch.zeros((len(lengths), t), dtype=torch.long)
    batch_mask = torch.zeros((len(lengths), t), dtype=torch.long)
    for row, n in enumerate(lengths):
        batch_ids[row, t - n :] = torch.randint(1, VOCAB, (n,), generator=gen)
        batch_mask[row, t - n :] = 1

    with torch.no_grad():
        logits = model(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            position_ids=positions_from_mask(torch.ones_like(ids)),
        ).logits
        batch_logits = model(
            input_ids=batch_ids,
            attention_mask=batch_mask,
            position_ids=positions_from_mask(batch_mask),
        ).logits

    save_file(
        {
            "ids": ids.contiguous(),
            "logits": logits.float().contiguous(),
            "batch_ids": batch_ids.contiguous(),
            "batch_mask": batch_mask.contiguous(),
            "batch_logits": batch_logits.float().contiguous(),
        },
        str(folder / "reference.safetensors"),
    )
    files = sorted(p.name for p in folder.iterdir())
    print(f"{name}: {files}, max |logit| {logits.abs().max().item():.3f}")


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for seed, (name, spec) in enumerate(MODELS.items()):
        build(out, name, spec, seed=1000 + seed)
    (out / "README.md").write_text(
        "Tiny random Hugging Face models for the parity tests in `sdpo-models/tests/`.\n\n"
        "Generated by `python3 scripts/make_model_fixtures.py sdpo-models/tests/fixtures/models`;\n"
        "see that script's header for what each file holds.\n"
    )
    print(json.dumps({"models": list(MODELS)}))


if __name__ == "__main__":
    main()
