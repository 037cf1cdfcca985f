#!/usr/bin/env python3
"""The model shapes of `sdpo-train/benches/gpu.rs` in PyTorch/transformers, random weights.

    python3 scripts/gpu_bench_torch.py smollm2-135m              # cuda, train and generate
    python3 scripts/gpu_bench_torch.py qwen2.5-1.5b train        # one phase only
    python3 scripts/gpu_bench_torch.py tiny --device cpu --quick # a quick check without a GPU

Arguments: a model shape — `smollm2-135m` (default), `qwen2.5-1.5b`, `tiny` (the built-in
2-layer Llama of sdpo-rs with a 1024-token vocabulary) — and a phase — `all` (default), `train`,
`generate`; `--device` (`cuda`, default, or `cpu`); `--quick` (tiny sizes: checks that it runs).
`scripts/gpu_check.sh` runs it after the Rust bench and puts both in one table.

The models are `AutoModelForCausalLM.from_config` of a `LlamaConfig` / `Qwen2Config` with the
real architecture numbers, float32, created on the device (transformers' own initialization,
normal(0, 0.02) like sdpo-rs's `init_model`), attention as transformers picks it by default
(`SDPO_TORCH_ATTN` names another: `eager`, `sdpa`), matrix products in full float32 unless
`SDPO_TORCH_TF32=1` (`torch.set_float32_matmul_precision("high")`: TF32 tensor cores). Phases (`all` runs each in a child process,
so each reports its own peak memory):

- `train`: `model.train()`, `SDPO_BENCH_BATCH` x `SDPO_BENCH_LEN` (8 x 256) random tokens,
  `model(input_ids, labels=input_ids).loss` (mean next-token cross-entropy), `backward()`;
  tokens/s = batch x len / seconds per step;
- `generate`: `SDPO_BENCH_GEN_BATCH` (8) random prompts of `SDPO_BENCH_PROMPT_LEN` (32) tokens,
  `generate(do_sample=False, use_cache=True, max_new_tokens=min_new_tokens=SDPO_BENCH_NEW_TOKENS
  (64))`; tokens/s = new tokens / wall time (prefill included).

The Rust bench's third phase, one SDPO training step, has no PyTorch counterpart here.
`SDPO_BENCH_WARMUP` (1) untimed and `SDPO_BENCH_RUNS` (3) timed repetitions, median reported;
`torch.cuda.synchronize()` before each clock stops. Memory after the phase, on CUDA:
`pool_mib` is `torch.cuda.max_memory_reserved` (the caching allocator's high-water mark, as the
Rust bench's `pool_mib` is CubeCL's pools), `peak_alloc_mib` is `torch.cuda.max_memory_allocated`,
`in_use_mib` is `torch.cuda.memory_allocated` at the end; `rss_mib` is the host's `ru_maxrss`.
On the CPU the device fields are `NA`. `SDPO_BENCH_THREADS` (2) torch threads on the CPU.
Results are printed as `RESULT backend=torch model=... phase=... key=value ...` lines, with the
keys of the Rust bench.
"""

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import torch  # noqa: E402

PHASES = ("train", "generate")
SHAPES = ("tiny", "smollm2-135m", "qwen2.5-1.5b")

# The architectures, as each model's config.json gives them (`tiny`: sdpo-rs's built-in model,
# `sdpo_train::builtin::tiny_model_config(1024)`). Keys are transformers' config fields.
CONFIGS = {
    "tiny": dict(
        model_type="llama",
        vocab_size=1024,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        rms_norm_eps=1e-5,
        rope_theta=10_000.0,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
    ),
    # HuggingFaceTB/SmolLM2-135M(-Instruct)
    "smollm2-135m": dict(
        model_type="llama",
        vocab_size=49152,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        rms_norm_eps=1e-5,
        rope_theta=100_000.0,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        attention_bias=False,
        mlp_bias=False,
    ),
    # Qwen/Qwen2.5-1.5B-Instruct (q/k/v biases are part of Qwen2's architecture)
    "qwen2.5-1.5b": dict(
        model_type="qwen2",
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        use_sliding_window=False,
    ),
}

QUICK = dict(
    SDPO_BENCH_BATCH=2,
    SDPO_BENCH_LEN=16,
    SDPO_BENCH_GEN_BATCH=2,
    SDPO_BENCH_PROMPT_LEN=8,
    SDPO_BENCH_NEW_TOKENS=8,
    SDPO_BENCH_RUNS=2,
)


def fail(message):
    sys.exit(f"gpu_bench_torch: {message}")


def env_int(name, default, minimum):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        n = minimum - 1
    if n < minimum:
        fail(f"{name}={value!r}: expected a whole number >= {minimum}")
    return n


def mib(value):
    return "NA" if value is None else f"{value:.0f}"


def make_config(shape):
    """The transformers config of `shape`, the RoPE base set in both layouts (transformers < 5
    reads `rope_theta`, transformers >= 5 `rope_parameters`)."""
    from transformers import AutoConfig

    fields = dict(CONFIGS[shape])
    model_type = fields.pop("model_type")
    config = AutoConfig.for_model(model_type, **fields)
    theta = fields["rope_theta"]
    config.rope_theta = theta
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict):
        rope["rope_theta"] = theta
    return config


def rope_base(config):
    rope = getattr(config, "rope_parameters", None)
    if isinstance(rope, dict) and "rope_theta" in rope:
        return rope["rope_theta"]
    return getattr(config, "rope_theta", None)


class Bench:
    def __init__(self, args):
        self.shape = args.shape
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.batch = env_int("SDPO_BENCH_BATCH", 8, 1)
        self.len = env_int("SDPO_BENCH_LEN", 256, 2)
        self.gen_batch = env_int("SDPO_BENCH_GEN_BATCH", 8, 1)
        self.prompt_len = env_int("SDPO_BENCH_PROMPT_LEN", 32, 1)
        self.new_tokens = env_int("SDPO_BENCH_NEW_TOKENS", 64, 1)
        self.warmup = env_int("SDPO_BENCH_WARMUP", 1, 0)
        self.runs = env_int("SDPO_BENCH_RUNS", 3, 1)
        if self.cuda and not torch.cuda.is_available():
            fail("--device cuda: torch.cuda.is_available() is False")
        self.tf32 = os.environ.get("SDPO_TORCH_TF32", "0") == "1"
        torch.set_float32_matmul_precision("high" if self.tf32 else "highest")

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def build(self):
        """The model on the device, float32, random weights; and the seconds it took."""
        from transformers import AutoModelForCausalLM

        config = make_config(self.shape)
        attn = os.environ.get("SDPO_TORCH_ATTN")
        extra = {"attn_implementation": attn} if attn else {}
        start = time.perf_counter()
        torch.manual_seed(0)
        with torch.device(self.device):
            model = AutoModelForCausalLM.from_config(config, **extra)
        model = model.to(device=self.device, dtype=torch.float32)
        self.sync()
        init_s = time.perf_counter() - start
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        return model, init_s

    def timed(self, fn):
        """Median seconds of `runs` calls after `warmup` untimed ones, and the last result."""
        for _ in range(self.warmup):
            fn()
        seconds, last = [], None
        for _ in range(self.runs):
            start = time.perf_counter()
            last = fn()
            self.sync()
            seconds.append(time.perf_counter() - start)
        return statistics.median(seconds), last

    def head(self, phase, model, init_s):
        config = model.config
        params = sum(p.numel() for p in model.parameters())
        return (
            f"RESULT backend=torch model={self.shape} phase={phase} params={params} init_s={init_s:.2f} "
            f"device={self.device.type} attn={getattr(config, '_attn_implementation', None) or 'default'} "
            f"rope_theta={rope_base(config):g} tf32={int(self.tf32)} torch={torch.__version__.split('+')[0]}"
        )

    def memory(self):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        if not self.cuda:
            return f"pool_mib=NA in_use_mib=NA rss_mib={mib(rss)} peak_alloc_mib=NA"
        m = 1024 * 1024
        return (
            f"pool_mib={mib(torch.cuda.max_memory_reserved(self.device) / m)} "
            f"in_use_mib={mib(torch.cuda.memory_allocated(self.device) / m)} rss_mib={mib(rss)} "
            f"peak_alloc_mib={mib(torch.cuda.max_memory_allocated(self.device) / m)}"
        )

    def random_ids(self, rows, cols, vocab, seed):
        generator = torch.Generator().manual_seed(seed)
        return torch.randint(0, vocab, (rows, cols), generator=generator).to(self.device)

    def train(self):
        model, init_s = self.build()
        model.train()
        ids = self.random_ids(self.batch, self.len, model.config.vocab_size, 0)

        def step():
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            model.zero_grad(set_to_none=True)
            return loss.item()

        seconds, loss = self.timed(step)
        if not math.isfinite(loss):
            fail(f"train: the loss is {loss} (not finite)")
        print(
            f"{self.head('train', model, init_s)} shape={self.batch}x{self.len} runs={self.runs} "
            f"median_s={seconds:.4f} tokens_per_s={self.batch * self.len / seconds:.1f} loss={loss:.4f} "
            f"{self.memory()}"
        )

    def generate(self):
        model, init_s = self.build()
        model.eval()
        ids = self.random_ids(self.gen_batch, self.prompt_len, model.config.vocab_size, 1)
        mask = torch.ones_like(ids)

        def run():
            with torch.inference_mode():
                out = model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    do_sample=False,
                    use_cache=True,
                    max_new_tokens=self.new_tokens,
                    min_new_tokens=self.new_tokens,
                    pad_token_id=0,
                )
            return (out.shape[1] - self.prompt_len) * self.gen_batch

        seconds, new_tokens = self.timed(run)
        print(
            f"{self.head('generate', model, init_s)} shape={self.gen_batch}x{self.prompt_len}+{self.new_tokens} "
            f"runs={self.runs} median_s={seconds:.4f} new_tokens={new_tokens} "
            f"tokens_per_s={new_tokens / seconds:.1f} {self.memory()}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shape", nargs="?", default="smollm2-135m", choices=SHAPES)
    parser.add_argument("phase", nargs="?", default="all", choices=("all",) + PHASES)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--quick", action="store_true", help="tiny sizes (unless SDPO_BENCH_* are set)")
    args = parser.parse_args()
    if args.quick:
        for name, value in QUICK.items():
            os.environ.setdefault(name, str(value))
    if args.phase == "all":
        failed = []
        for phase in PHASES:
            cmd = [sys.executable, __file__, args.shape, phase, "--device", args.device]
            if subprocess.run(cmd).returncode != 0:
                failed.append(phase)
        if failed:
            fail(f"phase(s) failed: {', '.join(failed)}")
        return
    if args.device == "cpu":
        torch.set_num_threads(env_int("SDPO_BENCH_THREADS", 2, 1))
    bench = Bench(args)
    {"train": bench.train, "generate": bench.generate}[args.phase]()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
