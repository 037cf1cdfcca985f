#!/usr/bin/env python3
"""Check sdpo-models' Hugging Face export against transformers (run by hand, not by cargo test).

Command (from the repository root; needs pip `torch`, `transformers`, `tokenizers`):

    python3 scripts/check_export.py [OUT_DIR]

What it does:

1. builds a 256-token byte-level BPE tokenizer with a ChatML template (the tiny fixture models
   have 256 embedding rows) and saves it with transformers' `save_pretrained`;
2. runs the ignored test `export_check` of `cargo test -p sdpo-models --test models`, which loads every tiny fixture
   model (`sdpo-models/tests/fixtures/models/`), merges a random rank-4 LoRA into it, exports
   it with `export_hf_dir` and writes our logits on a fixed left-padded batch, our token ids
   and chat-template renderings; it also writes the SmolLM2 tokenizer fixture back with
   `Tokenizer::save_hf_files`;
3. loads each export with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer` and
   compares: logits (max |ours - HF| / max |HF| over real tokens, must be <= 1e-4, the
   tolerance of the parity tests), token ids (ours, the exported tokenizer's and the original
   tokenizer's must be equal) and chat-template renderings.

Exits with status 1 on any mismatch. Nothing is written to the repository.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
SMOLLM2 = ROOT / "sdpo-models/tests/fixtures/tokenizer/smollm2"
TOLERANCE = 1e-4
CHATML = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def tiny_tokenizer(path: Path):
    """A 256-token byte-level BPE: specials, every byte that occurs in UTF-8, ten merges."""
    byte_char = {}
    n = 0
    for b in range(256):  # GPT-2's byte -> character table
        if 33 <= b <= 126 or 161 <= b <= 172 or 174 <= b <= 255:
            byte_char[b] = chr(b)
        else:
            byte_char[b] = chr(256 + n)
            n += 1
    never_in_utf8 = {0xC0, 0xC1} | set(range(0xF5, 0x100))
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "in g", "e r", "Ġ a", "o n", "r e", "Ġ s"]
    tokens = specials + [byte_char[b] for b in range(256) if b not in never_in_utf8]
    tokens += ["".join(m.split(" ")) for m in merges]
    assert len(tokens) == 256
    vocab = {t: i for i, t in enumerate(tokens)}
    bpe = models.BPE(vocab, [tuple(m.split(" ")) for m in merges])
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    fast.chat_template = CHATML
    fast.save_pretrained(path)


def hf_logits(model, ids, mask):
    position_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask.long(), position_ids=position_ids).logits


def check_tokenizer(label, ours_file, exported_dir, original_dir, failures):
    ours = json.loads(Path(ours_file).read_text())
    exported = AutoTokenizer.from_pretrained(exported_dir)
    original = AutoTokenizer.from_pretrained(original_dir)
    checked = 0
    for case in ours["texts"]:
        text = case["text"]
        for key, special in (("ids", False), ("ids_special", True)):
            a = exported(text, add_special_tokens=special)["input_ids"]
            b = original(text, add_special_tokens=special)["input_ids"]
            if not (a == b == case[key]):
                failures.append(f"{label}: ids differ for {text!r} (special={special}): "
                                f"ours {case[key]}, export {a}, original {b}")
            checked += 1
    if ours["chat"] is not None:
        conv = ours["conversation"]
        a = exported.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        b = original.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        if not (a == b == ours["chat"]):
            failures.append(f"{label}: chat template renderings differ:\n{ours['chat']!r}\n{a!r}\n{b!r}")
    specials = {k: getattr(exported, k) for k in ("bos_token", "eos_token", "pad_token")}
    want = {k: getattr(original, k) for k in specials}
    if specials != want:
        failures.append(f"{label}: special tokens {specials} != original {want}")
    print(f"{label}: {checked} encodings identical (ours = export = original), chat template "
          f"{'identical' if ours['chat'] is not None else 'absent'}, specials {specials}")


def main():
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="sdpo-export-"))
    out.mkdir(parents=True, exist_ok=True)
    tok_dir = out / "tiny_tokenizer"
    tiny_tokenizer(tok_dir)
    env = dict(os.environ, SDPO_EXPORT_TOKENIZER=str(tok_dir), SDPO_EXPORT_OUT=str(out / "exports"),
               SDPO_EXPORT_EXTRA_TOKENIZER=str(SMOLLM2))
    subprocess.run(
        ["cargo", "test", "-q", "-p", "sdpo-models", "--test", "models", "export_check", "--",
         "--ignored", "--exact", "export_check::export_check"],
        cwd=ROOT, check=True, env=env,
    )
    exports = out / "exports"
    failures = []
    for ours_file in sorted(exports.glob("*.ours.json")):
        name = ours_file.name.removesuffix(".ours.json")
        if name in ("tokenizer", "extra_tokenizer"):
            continue
        ours = json.loads(ours_file.read_text())
        shape = ours["shape"]
        ids = torch.tensor(ours["ids"]).reshape(shape[:2])
        mask = torch.tensor(ours["mask"]).reshape(shape[:2])
        logits = torch.tensor(ours["logits"], dtype=torch.float32).reshape(shape)
        model = AutoModelForCausalLM.from_pretrained(
            exports / name, dtype=torch.float32, attn_implementation="eager"
        ).eval()
        want = hf_logits(model, ids, mask)
        real = mask.bool()
        err = (logits[real] - want[real]).abs().max().item()
        scale = want[real].abs().max().item()
        rel = err / scale
        print(f"{name:20s} {type(model).__name__:20s} max |ours - HF| / max |HF| = {rel:.2e}")
        if not rel <= TOLERANCE:
            failures.append(f"{name}: logits relative error {rel:.2e} > {TOLERANCE}")
        check_tokenizer(f"{name} tokenizer", exports / "tokenizer.ours.json", exports / name,
                        tok_dir, failures)
    check_tokenizer("smollm2 tokenizer (save_hf_files)", exports / "extra_tokenizer.ours.json",
                    exports / "extra_tokenizer", SMOLLM2, failures)
    if failures:
        print("\nFAILURES:\n" + "\n".join(failures))
        sys.exit(1)
    print("\nall exports match transformers")


if __name__ == "__main__":
    main()
