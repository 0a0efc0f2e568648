#!/usr/bin/env python3
"""PyTorch stand-in for the original BD3-LM code on the CPU (docs/performance.md).

It does the work the original's cached sampling path does (spec §7, §9, §11), in f32:
every layer projects the block's B rows, appends their un-rotated q/k/v to the cached window,
applies RoPE to all c + B rows of the window, runs attention for all c + B query rows and
keeps the last B; the LM head runs on all B rows; SUBS; then the first-hitting sampler in
float64 on every row (exp, nucleus by sort + cumsum, an exponential race per row), one
position revealed per call, a store pass per finished block.

Not part of the test command (PyTorch is installed from PyPI only for benchmarks):

    python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch numpy
    /tmp/torchvenv/bin/python scripts/bench_torch.py --model /tmp/synth-bs16 --threads 2

Prints one JSON object per fill and one for `generate`, and a correctness check: the
stand-in's logits against a golden fixture. Per fill: `ms_median`/`ms_min` of one step (a
forward with all B rows' logits, then the float64 draw on every row) and
`forward_ms_median`/`forward_ms_min` of the forward alone (all B rows' logits).

On a GPU (`scripts/gpu-check.sh` runs this): `--device cuda --dtypes f32,bf16 --attention
original,sdpa`, one line per dtype, attention path and fill, and per generation. `original` is
the original's cached path (every row of the window attends); `sdpa` only the block's B rows
attend (SDPA over the window), the least work a PyTorch port would do. The sampler stays float64.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch

DTYPES = {"F32": np.float32, "I64": np.int64, "F64": np.float64, "I32": np.int32}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        a, b = meta["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=DTYPES[meta["dtype"]]).reshape(meta["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out


class Model:
    def __init__(self, directory, device="cpu", dtype=torch.float32):
        self.cfg = json.load(open(os.path.join(directory, "config.json")))
        w = read_safetensors(os.path.join(directory, "model.safetensors"))
        c = self.cfg
        self.h, self.nh, self.n = c["hidden_dim"], c["n_heads"], c["model_length"]
        self.b, self.v, self.layers = c["block_size"], c["vocab_size"], c["n_blocks"]
        self.d = self.h // self.nh
        p = "backbone."
        # Conditioning (time_conditioning = false: sigma = 0, spec §4.2).
        half = 128
        temb = torch.cat([torch.ones(half), torch.zeros(half)])
        silu = torch.nn.functional.silu
        h1 = silu(w[p + "sigma_map.mlp.0.weight"] @ temb + w[p + "sigma_map.mlp.0.bias"])
        cond = silu(w[p + "sigma_map.mlp.2.weight"] @ h1 + w[p + "sigma_map.mlp.2.bias"])
        self.emb = w[p + "vocab_embed.embedding"]
        self.blocks = []
        for l in range(self.layers):
            q = f"{p}blocks.{l}."
            mod = w[q + "adaLN_modulation.weight"] @ cond + w[q + "adaLN_modulation.bias"]
            self.blocks.append({
                "mod": mod.chunk(6),
                "norm1": w[q + "norm1.weight"], "norm2": w[q + "norm2.weight"],
                "qkv": w[q + "attn_qkv.weight"], "out": w[q + "attn_out.weight"],
                "w1": w[q + "mlp.0.weight"], "b1": w[q + "mlp.0.bias"],
                "w2": w[q + "mlp.2.weight"], "b2": w[q + "mlp.2.bias"],
            })
        fm = w[p + "output_layer.adaLN_modulation.weight"] @ cond + w[p + "output_layer.adaLN_modulation.bias"]
        self.final_shift, self.final_scale = fm.chunk(2)
        self.final_norm = w[p + "output_layer.norm_final.weight"]
        self.head_w = w[p + "output_layer.linear.weight"]
        self.head_b = w[p + "output_layer.linear.bias"]
        inv_freq = w[p + "rotary_emb.inv_freq"]
        t = torch.arange(self.n, dtype=torch.float32)
        freqs = torch.einsum("i,j->ij", t, inv_freq)
        emb = torch.cat([freqs, freqs], dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()
        self.device, self.dtype, self.block_queries = device, dtype, False
        to = lambda t: t.to(device=device, dtype=dtype)
        self.blocks = [{k: tuple(map(to, v)) if k == "mod" else to(v) for k, v in b.items()}
                       for b in self.blocks]
        for name in ("emb", "final_shift", "final_scale", "final_norm", "head_w", "head_b",
                     "cos", "sin"):
            setattr(self, name, to(getattr(self, name)))
        self.reset()

    def reset(self):
        # The original caches the whole fused qkv row of committed tokens, un-rotated.
        self.cache = [torch.zeros(0, 3 * self.h, device=self.device, dtype=self.dtype)
                      for _ in range(self.layers)]

    @staticmethod
    def ln(x, weight):
        return torch.nn.functional.layer_norm(x, (x.shape[-1],)) * weight

    def rope(self, x, n):
        x1, x2 = x[..., : self.d // 2], x[..., self.d // 2:]
        rot = torch.cat([-x2, x1], dim=-1)
        return x * self.cos[:n, None, :] + rot * self.sin[:n, None, :]

    @torch.no_grad()
    def forward(self, tokens, store):
        x = self.emb[tokens.to(self.device)]
        for l, blk in enumerate(self.blocks):
            sm, cm, gm, sp, cp, gp = blk["mod"]
            hdn = self.ln(x, blk["norm1"]) * (1 + cm) + sm
            qkv = hdn @ blk["qkv"].T
            window = torch.cat([self.cache[l], qkv], dim=0)  # c + B rows
            if store:
                self.cache[l] = window
            rows = window.shape[0]
            q, k, v = window.view(rows, 3, self.nh, self.d).unbind(1)
            q, k = self.rope(q, rows), self.rope(k, rows)
            if self.block_queries:  # --attention sdpa: only the block's rows attend
                q = q[-self.b:]
            # Attention on 4-D [batch, heads, rows, d] tensors as the original passes them
            # (3-D inputs take PyTorch's slow path); every row of the window attends in the
            # original's cached path.
            a = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None])
            a = a[0].transpose(0, 1).reshape(-1, self.h)[-self.b:]
            x = x + gm * (a @ blk["out"].T)
            hdn = self.ln(x, blk["norm2"]) * (1 + cp) + sp
            hdn = torch.nn.functional.gelu(hdn @ blk["w1"].T + blk["b1"], approximate="tanh")
            x = x + gp * (hdn @ blk["w2"].T + blk["b2"])
        if store:
            for l in range(self.layers):
                if self.cache[l].shape[0] >= self.n:
                    self.cache[l] = self.cache[l][self.b:]
            return None
        hdn = self.ln(x, self.final_norm) * (1 + self.final_scale) + self.final_shift
        return hdn @ self.head_w.T + self.head_b


def subs(logits, block, mask):
    logits, block = logits.float(), block.to(logits.device)
    logits[:, mask] += -1e6
    logp = logits - torch.logsumexp(logits, dim=-1, keepdim=True)
    clean = block != mask
    logp[clean] = -1e6
    logp[clean, block[clean]] = 0.0
    return logp


def draw_all_rows(logp, top_p, gen):
    """The original's float64 sampling: nucleus on every row, a race on every row."""
    p = logp.double().exp()
    if top_p < 1.0:
        sorted_p, idx = p.sort(dim=-1, descending=True)
        cum = sorted_p.cumsum(-1)
        keep = cum <= top_p
        keep[:, 0] = True
        sorted_p = sorted_p * keep
        p = torch.zeros_like(p).scatter(-1, idx, sorted_p)
        p = p / p.sum(-1, keepdim=True)
    u = torch.rand(p.shape, dtype=torch.float64, generator=gen, device=p.device)
    return (p / (1e-10 - (u + 1e-10).log())).argmax(-1)


def step(model, block, mask, top_p, gen):
    logits = model.forward(block, store=False)
    return draw_all_rows(subs(logits, block, mask), top_p, gen).cpu()


def generate(model, tokens, mask, bos, top_p, gen, seed):
    rng = np.random.default_rng(seed)
    model.reset()
    seq = [bos]
    block = torch.full((model.b,), mask, dtype=torch.long)
    block[0] = bos
    calls = 0
    while len(seq) < tokens + 1:
        masked = (block == mask).nonzero().flatten()
        if len(masked) == 0:
            model.forward(block, store=True)
            calls += 1
            seq.extend(block.tolist()[1 if len(seq) == 1 else 0:])
            block = torch.full((model.b,), mask, dtype=torch.long)
            continue
        sampled = step(model, block, mask, top_p, gen)
        calls += 1
        pos = masked[rng.integers(len(masked))]
        block[pos] = sampled[pos]
    return len(seq) - 1, calls


def check_fixture(directory, device="cpu"):
    """Max |logit error| of the stand-in against a golden fixture (teacher-forced logits)."""
    model = Model(directory, device)
    g = read_safetensors(os.path.join(directory, "golden.safetensors"))
    ids = g["tf_input_ids"].flatten().long()
    prefix = int(g["tf_prefix_len"].flatten()[0])
    for s in range(0, prefix, model.b):
        model.forward(ids[s:s + model.b], store=True)
    logits = model.forward(ids[prefix:prefix + model.b], store=False)
    golden = g["tf_logits_raw"].reshape(logits.shape).float()
    return float((logits.cpu() - golden).abs().max())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--fills", default="0,512,1008")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--top-p", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--check-fixture", default="tests/fixtures/tiny-v512-bs16")
    ap.add_argument("--real-fill", action="store_true",
                    help="fill the cache with store passes instead of random q/k/v")
    ap.add_argument("--no-generate", action="store_true")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtypes", default="f32", help="f32 and/or bf16, comma-separated")
    ap.add_argument("--attention", default="original",
                    help="original (every window row attends) and/or sdpa (the block's rows)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    err = check_fixture(args.check_fixture, args.device)
    print(json.dumps({"check": "logits vs golden fixture", "fixture": args.check_fixture,
                      "max_abs_err": err}), flush=True)
    # A stand-in that misses its fixture times the wrong program (`not <=`: NaN fails too).
    if not err <= 1e-3:
        sys.exit(f"bench_torch.py: logits differ from {args.check_fixture} by {err} (> 1e-3)")
    for dtype in args.dtypes.split(","):
        for attention in args.attention.split(","):
            bench(args, dtype, attention)


def bench(args, dtype, attention):
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    model = Model(args.model, args.device, {"f32": torch.float32, "bf16": torch.bfloat16}[dtype])
    model.block_queries = attention == "sdpa"
    tags = {"device": args.device, "dtype": dtype, "attention": attention}
    mask, bos = model.v - 1, model.v - 2
    gen = torch.Generator(device=args.device).manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    for fill in [int(f) for f in args.fills.split(",")]:
        model.reset()
        if args.real_fill:
            ctx = [bos] + list(rng.integers(0, model.v - 2, size=fill - 1)) if fill else []
            for s in range(0, fill, model.b):
                model.forward(torch.tensor(ctx[s:s + model.b], dtype=torch.long), store=True)
        else:
            # A step's work depends on the fill, not on the cached values: random q/k/v of the
            # right shape instead of `fill / B` store passes (minutes on a loaded machine).
            model.cache = [torch.randn(fill, 3 * model.h, device=model.device).to(model.dtype)
                           for _ in range(model.layers)]
        block = torch.full((model.b,), mask, dtype=torch.long)
        times = []
        for run in range(args.runs + 1):
            t = time.perf_counter()
            step(model, block, mask, args.top_p, gen)
            sync()
            if run:
                times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        forward_times = []
        for run in range(args.runs + 1):
            t = time.perf_counter()
            model.forward(block, store=False)
            if run:
                forward_times.append((time.perf_counter() - t) * 1e3)
        forward_times.sort()
        print(json.dumps({"backend": "pytorch", "threads": args.threads, "fill": fill,
                          "runs": args.runs, "ms_min": times[0],
                          "ms_median": float(np.median(times)),
                          "forward_ms_min": forward_times[0],
                          "forward_ms_median": float(np.median(forward_times)),
                          "figure": "step = forward with all rows' logits + float64 draw on "
                                    "every row; forward = the forward alone",
                          "torch": torch.__version__, **tags}), flush=True)
    if args.no_generate:
        return
    t = time.perf_counter()
    produced, calls = generate(model, args.tokens, mask, bos, args.top_p, gen, args.seed)
    sync()
    secs = time.perf_counter() - t
    print(json.dumps({"backend": "pytorch", "threads": args.threads, "generate_tokens": produced,
                      "model_calls": calls, "seconds": secs, "tokens_per_s": produced / secs,
                      **tags}),
          flush=True)


if __name__ == "__main__":
    main()
