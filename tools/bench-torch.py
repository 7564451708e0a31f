#!/usr/bin/python3
"""PyTorch peer benchmark of the reference training step (issue #5's comparison). Prints JSON.

    /usr/bin/python3 tools/bench-torch.py [--steps 10] [--warmup 3] [--modes token,patch]
                                          [--threads 2] [--peak-gflops G] [--precision fp32|bf16]

Optional: needs Debian's `python3-torch` (PyTorch 1.13, `apt-get install python3-torch`), run by
the system interpreter /usr/bin/python3 (a pyenv `python3` on PATH does not see it). CI and the
tests never need it.

What it runs, in plain eager PyTorch, is the step that tools/bench-step.ts times on our backends:
- the reference config (libs/model Presets.reference): LLaMA-style decoder, vocab 4096, d_model
  256, 4 layers, 4 heads of 64, SwiGLU hidden 688, pre-norm RMSNorm (eps 1e-6), RoPE (base 10000,
  Hugging Face "rotate half"), no biases, untied embeddings, init N(0, 0.02), norm gains 1; fp32;
- B = 8 sequences of T = 256 positions: 256 tokens in token mode, 256 patches of K = 4 tokens
  (1,024 tokens) in patch mode, whose input is the mean of the K token embeddings and whose RoPE
  position is the patch index (docs/method.md §1);
- loss: token mode, next-token cross-entropy over positions 0..254; patch mode, the official code's
  form (docs/method.md §2.2): one log_softmax per position 0..254, the mean NLL of each of the K
  tokens of the next patch, averaged over the K slots;
- backward, global-norm clipping at 1.0, torch.optim.AdamW (lr 1e-3, betas 0.9/0.95, eps 1e-8,
  weight decay 0.1 on every 2-D weight including the embedding and lm_head, none on norm gains).

Tokens/s counts tokens consumed per step (2,048 in token mode, 8,192 in patch mode) over the
wall-clock seconds of the step. FLOPs use libs/model ParameterTable.flopsPerToken (nanoGPT style:
6·N_matmul + 12·L·C·T per position, divided by K), so GFLOP/s compare one to one with
bench-step.ts. The modes take turns step by step after their warm-up, so another job sharing the
machine slows both alike; tokens per CPU-second of this process are reported too.

The environment is the caller's: the script sets no OpenBLAS or OpenMP variable. Debian's torch
does its fp32 matmuls in the system BLAS (libblas.so.3, by default OpenBLAS 0.3.21's pthread
build); OpenBLAS reads OPENBLAS_CORETYPE when it loads, and its own threads and torch's OpenMP
threads share the cores, hence OMP_WAIT_POLICY. The JSON records those variables as this process
saw them and, through ctypes, the kernel core OpenBLAS picked. Setups compared in issue #5:

    /usr/bin/python3 tools/bench-torch.py                                  # as installed
    OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/bench-torch.py
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/bench-torch.py
    OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE /usr/bin/python3 tools/bench-torch.py

OpenBLAS 0.3.21 does not know every CPU: on an Intel Xeon of family 6 model 207 (Emerald Rapids)
it falls back to "Prescott" (SSE3 kernels, about 30 GFLOP/s sgemm) unless OPENBLAS_CORETYPE names
an AVX-512 core such as SkylakeX; check `openblas.core` in the JSON. Torch's own default here is
one intra-op thread (`torchDefaultThreads`), so --threads sets it explicitly.
"""

import argparse
import ctypes
import json
import math
import os
import re
import resource
import time

import torch
import torch.nn.functional as F
from torch import nn

VOCAB, D_MODEL, N_LAYERS, N_HEADS, FFN, T = 4096, 256, 4, 4, 688, 256
HEAD_DIM = D_MODEL // N_HEADS
B, PATCH_K = 8, 4
EPS, ROPE_BASE, INIT_STD = 1e-6, 10000.0, 0.02
LR, BETAS, ADAM_EPS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.95), 1e-8, 0.1, 1.0


def flops_per_token(positions: int, k: int) -> float:
    """libs/model ParameterTable.flopsPerToken: (6·N_matmul + 12·L·C·T) / K."""
    matmul = N_LAYERS * (4 * D_MODEL * N_HEADS * HEAD_DIM + 3 * D_MODEL * FFN) + VOCAB * D_MODEL
    return (6 * matmul + 12 * N_LAYERS * D_MODEL * positions) / k


class RMSNorm(nn.Module):
    def __init__(self, size: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + EPS) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.input_layernorm = RMSNorm(D_MODEL)
        self.q_proj = nn.Linear(D_MODEL, N_HEADS * HEAD_DIM, bias=False)
        self.k_proj = nn.Linear(D_MODEL, N_HEADS * HEAD_DIM, bias=False)
        self.v_proj = nn.Linear(D_MODEL, N_HEADS * HEAD_DIM, bias=False)
        self.o_proj = nn.Linear(N_HEADS * HEAD_DIM, D_MODEL, bias=False)
        self.post_attention_layernorm = RMSNorm(D_MODEL)
        self.gate_proj = nn.Linear(D_MODEL, FFN, bias=False)
        self.up_proj = nn.Linear(D_MODEL, FFN, bias=False)
        self.down_proj = nn.Linear(FFN, D_MODEL, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        h = self.input_layernorm(x)
        # (B,H,T,D) <- (B,T,H,D)
        q = self.q_proj(h).view(b, t, N_HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k_proj(h).view(b, t, N_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v_proj(h).view(b, t, N_HEADS, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # (B,H,T,T); torch 1.13 has no scaled_dot_product_attention, so this is what eager runs.
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(HEAD_DIM)
        probs = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)
        att = (probs @ v).transpose(1, 2).reshape(b, t, N_HEADS * HEAD_DIM)
        x = x + self.o_proj(att)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed_tokens = nn.Embedding(VOCAB, D_MODEL)
        self.layers = nn.ModuleList(Block() for _ in range(N_LAYERS))
        self.norm = RMSNorm(D_MODEL)
        self.lm_head = nn.Linear(D_MODEL, VOCAB, bias=False)
        for p in self.parameters():
            if p.dim() == 2:
                nn.init.normal_(p, 0.0, INIT_STD)
        inv_freq = 1.0 / ROPE_BASE ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float64) / HEAD_DIM)
        angles = torch.outer(torch.arange(T, dtype=torch.float64), inv_freq)
        angles = torch.cat((angles, angles), dim=-1)  # (T,D)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)
        self.register_buffer("mask", torch.ones(T, T, dtype=torch.bool).triu(1), persistent=False)

    def forward(self, ids, k: int):
        """Logits (B,T,V) for ids (B,K·T): position t sees the patches (tokens when K = 1) 0..t."""
        b = ids.shape[0]
        x = self.embed_tokens(ids)  # (B,K·T,C)
        if k > 1:
            x = x.view(b, -1, k, D_MODEL).mean(2)  # (B,T,C) <- mean over K of (B,T,K,C)
        for layer in self.layers:
            x = layer(x, self.cos, self.sin, self.mask)
        return self.lm_head(self.norm(x))


def loss_of(logits, ids, k: int):
    """Token mode: next-token CE. Patch mode: modeling_llama.py's patch loss (docs/method.md §2.2)."""
    if k == 1:
        return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
    log_probs = F.log_softmax(logits[:, :-1].reshape(-1, VOCAB), dim=-1)  # (B·(T-1),V)
    labels = ids[:, k:].reshape(-1, k)  # (B·(T-1),K): the tokens of the next patch
    return sum(F.nll_loss(log_probs, labels[:, i]) for i in range(k)) / k


class Run:
    """One mode: its own model, optimizer and fixed batch, and the times of its measured steps."""

    def __init__(self, mode: str, seed: int, bf16: bool = False):
        self.bf16 = bf16
        if mode not in ("token", "patch"):
            raise SystemExit(f"--modes: expected token or patch, got {mode!r}")
        self.mode, self.k = mode, PATCH_K if mode == "patch" else 1
        torch.manual_seed(seed)
        self.model = Decoder()
        params = list(self.model.parameters())
        self.optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in params if p.dim() == 2], "weight_decay": WEIGHT_DECAY},
                {"params": [p for p in params if p.dim() != 2], "weight_decay": 0.0},
            ],
            lr=LR,
            betas=BETAS,
            eps=ADAM_EPS,
        )
        self.ids = torch.randint(0, VOCAB, (B, self.k * T), generator=torch.Generator().manual_seed(seed + 7))
        self.wall, self.cpu, self.losses, self.grad_norms = 0.0, 0.0, [], []

    def step(self, timed: bool):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=self.bf16):
            loss = loss_of(self.model(self.ids, self.k), self.ids, self.k)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
        self.optimizer.step()
        value = loss.item()
        if not timed:
            return
        self.wall += time.perf_counter() - wall0
        self.cpu += time.process_time() - cpu0
        self.losses.append(round(value, 4))
        self.grad_norms.append(round(grad_norm.item(), 4))

    def report(self, steps: int, peak_gflops):
        tokens = B * self.k * T
        seconds = self.wall / steps
        fpt = flops_per_token(T, self.k)
        gflops = fpt * tokens / seconds / 1e9
        return {
            "mode": self.mode,
            "K": self.k,
            "B": B,
            "T": T,
            "tokensPerStep": tokens,
            "tokensPerSec": round(tokens / seconds),
            "secondsPerStep": round(seconds, 4),
            "stepsMeasured": steps,
            "cpuSecondsPerStep": round(self.cpu / steps, 4),
            "tokensPerCpuSec": round(tokens * steps / self.cpu),
            "flopsPerToken": fpt,
            "flopsPerStep": fpt * tokens,
            "gflops": round(gflops, 2),
            "mfu": None if peak_gflops is None else round(gflops / peak_gflops, 4),
            "losses": self.losses,
            "gradNorms": self.grad_norms,
        }


def openblas_info():
    """What the OpenBLAS loaded into this process says about itself (None if torch loaded another BLAS)."""
    maps = open("/proc/self/maps").read()
    libs = sorted({line.split()[-1] for line in maps.splitlines() if re.search(r"lib(open)?blas|liblapack", line)})
    if not any("openblas" in lib for lib in libs):
        return {"loaded": libs}
    lib = ctypes.CDLL("libopenblas.so.0")  # already mapped, so this is the instance torch calls
    for name in ("openblas_get_corename", "openblas_get_config"):
        getattr(lib, name).restype = ctypes.c_char_p
    return {
        "loaded": libs,
        "core": lib.openblas_get_corename().decode(),
        "config": lib.openblas_get_config().decode(),
        "threads": lib.openblas_get_num_threads(),
    }


def blas_summary() -> str:
    """One line from torch.__config__.show(): BLAS/LAPACK and CPU capability."""
    text = torch.__config__.show()
    keys = ("BLAS_INFO", "LAPACK_INFO", "USE_MKLDNN", "USE_OPENMP")
    settings = [m.group(0) for key in keys for m in [re.search(rf"{key}=[^,\s]*", text)] if m]
    capability = re.search(r"CPU capability usage: (\S+)", text)
    mkldnn = re.search(r"MKL-DNN v\S+", text)
    return ", ".join(settings + [f"CPU capability {capability.group(1) if capability else '?'}"] + ([mkldnn.group(0)] if mkldnn else []))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=10, help="measured steps per mode")
    parser.add_argument("--warmup", type=int, default=3, help="unmeasured steps per mode first")
    parser.add_argument("--modes", default="token,patch")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    parser.add_argument("--peak-gflops", type=float, default=None, help="machine FP32 peak, for MFU")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32",
        help="bf16: the forward and loss under torch.autocast('cpu', bfloat16) (fp32 weights, grads and AdamW)",
    )
    args = parser.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.threads < 1:
        raise SystemExit("--steps and --threads must be >= 1, --warmup >= 0")

    load_before = os.getloadavg()
    torch_default_threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    runs = [Run(mode, seed=1 + i, bf16=args.precision == "bf16") for i, mode in enumerate(args.modes.split(","))]
    for run in runs:
        for _ in range(args.warmup):
            run.step(timed=False)
    for _ in range(args.steps):
        for run in runs:
            run.step(timed=True)
    results = [run.report(args.steps, args.peak_gflops) for run in runs]
    by_mode = {r["mode"]: r for r in results}
    ratio = None
    if "token" in by_mode and "patch" in by_mode:
        ratio = round(by_mode["patch"]["tokensPerSec"] / by_mode["token"]["tokensPerSec"], 2)
    report = {
        "benchmark": "PyTorch training step (forward, loss, backward, clip, AdamW), reference config",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "torchDefaultThreads": torch_default_threads,
        "config": {"dtype": "float32", "precision": args.precision, "warmup": args.warmup, "lr": LR, "optimizer": "torch.optim.AdamW (default foreach)"},
        "env": {name: os.environ.get(name) for name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_WAIT_POLICY", "OMP_NUM_THREADS")},
        "blas": blas_summary(),
        "openblas": openblas_info(),
        "results": results,
        "patchOverToken": ratio,
        # Peak resident memory of this process over the whole benchmark (both modes), in MiB.
        "peakRssMiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "loadAverageBefore": [round(x, 2) for x in load_before],
        "loadAverageAfter": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
