#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (committed).

Multi-file inputs are joined with the separator line of `sdpo_cli::fuzzing::SEPARATOR`.
Seeds come from the repository's own fixtures and examples, plus a tiny Llama model folder
(8 wide, 1 layer, 16 tokens) written here so the model targets start from a valid, small file.
Run from the repository root: `python3 fuzz/make_seeds.py` (needs numpy).
"""
import json
import pathlib
import struct

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"
SEP = b"\n--8<--\n"


def put(target, name, data):
    d = CORPUS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def safetensors(tensors):
    header, offset, blobs = {}, 0, []
    for name, array in tensors.items():
        raw = array.astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


def tiny_llama():
    h, inter, vocab, heads, kv, hd = 8, 16, 16, 2, 1, 4
    config = {
        "model_type": "llama", "vocab_size": vocab, "hidden_size": h, "intermediate_size": inter,
        "num_hidden_layers": 1, "num_attention_heads": heads, "num_key_value_heads": kv,
        "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        "hidden_act": "silu", "tie_word_embeddings": True,
    }
    rng = np.random.default_rng(0)
    w = lambda *s: rng.standard_normal(s) * 0.1
    p = "model.layers.0."
    tensors = {
        "model.embed_tokens.weight": w(vocab, h),
        "model.norm.weight": np.ones(h),
        p + "input_layernorm.weight": np.ones(h),
        p + "post_attention_layernorm.weight": np.ones(h),
        p + "self_attn.q_proj.weight": w(heads * hd, h),
        p + "self_attn.k_proj.weight": w(kv * hd, h),
        p + "self_attn.v_proj.weight": w(kv * hd, h),
        p + "self_attn.o_proj.weight": w(h, heads * hd),
        p + "mlp.gate_proj.weight": w(inter, h),
        p + "mlp.up_proj.weight": w(inter, h),
        p + "mlp.down_proj.weight": w(h, inter),
    }
    return json.dumps(config, indent=1).encode(), safetensors(tensors)


def main():
    gguf = ROOT / "sdpo-models/src/gguf/testdata"
    put("gguf", "tensors.gguf", (gguf / "tensors.gguf").read_bytes())
    put("gguf", "tiny_llama.f32.gguf", (gguf / "tiny_llama.f32.gguf").read_bytes())

    config, weights = tiny_llama()
    put("hf_model", "tiny_llama", config + SEP + weights)
    put("hf_model", "config_only", config)

    tok = gguf / "tiny_llama_tokenizer"
    parts = [(tok / f).read_bytes() for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja"]]
    put("tokenizer", "tiny_llama", SEP.join(parts))
    put("tokenizer", "tokenizer_json_only", parts[0])

    for ron in sorted((ROOT / "examples/configs").glob("*.ron")):
        put("run_config", ron.stem, ron.read_bytes())
    put("run_config", "sets", b"(train: (steps: 5))" + SEP +
        b"train.lora=Some((rank: 4))\ntrain.lora.alpha=8.0\ntrain.sdpo.alpha=1.0\nmodel=Gguf(\"m.gguf\")")

    for jsonl in [ROOT / "examples/data/addition.jsonl", *sorted((ROOT / "sdpo-train/tests/data").glob("*.jsonl"))]:
        put("jsonl", jsonl.stem, jsonl.read_bytes()[:4096])


if __name__ == "__main__":
    main()
