#!/usr/bin/env python3
"""bench/bench_m2rnn_triton.py - cppmega's Triton M2RNN forward (m2rnn_scan_triton) on
nam-bench-cuda's m2rnn shapes, timed the same way, for a side-by-side with
build/nam-bench-cuda --only m2rnn.

usage: bench/bench_m2rnn_triton.py --triton-src PATH [--quick] [--reps N] [--warmup N]

PATH is cppmega's cppmega/megatron/m2rnn_triton.py (DatasunriseOU/cppmega), brought beside
the run and never committed here; it needs only torch and triton. Without a CUDA device,
torch, triton or the file, the script prints one line saying why it is skipped and exits 0.

Method (as bench/bench_cuda.cu's m2rnn rows):
  - K 64, V 16, one shared q/k head, H value/W/gate heads; q, k, v bf16 uniform [-1, 1);
    W = I + U(-0.1, 0.1) (f32); the gate f = exp(-exp(A_log) softplus(a + dt_bias)) computed
    in fp32 by torch from a ~ U(-2, 2), A_log ~ U(0, 2.7), dt_bias ~ U(-6, -2), then cast to
    bf16 as cppmega's mixer does (its kernel takes the gate precomputed);
  - what is timed: m2rnn_scan_triton(q, k, v, W, f) under torch.no_grad(), i.e. the scan
    only: nam's kernel also computes the gate and adds D v, which here happen outside;
  - validation first on a small shape (b 1, l 64, H 3) against a float64 torch loop of the
    equations: |triton - ref| <= 2e-2 * max|ref| (it uses tanh.approx.f32 and a bf16 gate);
  - warm-ups, then reps each between a torch.cuda.Event pair, the L2 flushed before each
    rep (writing a buffer of 2x the L2 size, outside the pair); median, min, p90;
  - FLOPs (2 K V V + 7 K V) b l H, as nam-bench-cuda counts them.
"""
import argparse
import importlib.util
import math
import sys

# keep in sync with bx_m2rnn() in bench/bench_cuda.cu: (b, l, H)
FULL = [(2, 4096, 51), (2, 4096, 44), (1, 4096, 51)]
QUICK = [(1, 1024, 51)]
K, V = 64, 16


def skip(why):
    print("nam-bench-m2rnn-triton: skipped: " + why)
    return 0


def inputs(torch, b, l, H, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    u = lambda *s, lo=-1.0, hi=1.0, dt=torch.float32: (torch.rand(*s, generator=g, device="cuda") * (hi - lo) + lo).to(dt)
    q = u(b, l, 1, K, dt=torch.bfloat16)
    k = u(b, l, 1, K, dt=torch.bfloat16)
    v = u(b, l, H, V, dt=torch.bfloat16)
    W = torch.eye(V, device="cuda").expand(H, V, V) + u(H, V, V, lo=-0.1, hi=0.1)
    a = u(b, l, H, lo=-2.0, hi=2.0)
    A_log = u(H, lo=0.0, hi=2.7)
    dt_bias = u(H, lo=-6.0, hi=-2.0)
    f = torch.exp(-torch.exp(A_log) * torch.nn.functional.softplus(a + dt_bias)).to(torch.bfloat16)
    return q, k, v, W.contiguous(), f


def reference(torch, q, k, v, W, f):
    """float64, from the equations: S = f S + (1 - f) tanh(S W + k v^T), y = S^T q"""
    q, k, v, W, f = (t.double() for t in (q, k, v, W, f))
    b, l, H = v.shape[0], v.shape[1], v.shape[2]
    S = torch.zeros(b, H, K, V, dtype=torch.float64, device=q.device)
    y = torch.empty(b, l, H, V, dtype=torch.float64, device=q.device)
    for t in range(l):
        ft = f[:, t, :, None, None]
        S = ft * S + (1 - ft) * torch.tanh(S @ W[None] + k[:, t, :, :, None] * v[:, t, :, None, :])
        y[:, t] = (q[:, t, :, None, :] @ S).squeeze(-2)
    return y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--triton-src", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return skip(f"no torch ({exc})")
    if not torch.cuda.is_available():
        return skip("no CUDA device")
    try:
        spec = importlib.util.spec_from_file_location("m2rnn_triton", args.triton_src)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        scan = mod.m2rnn_scan_triton
        if not getattr(mod, "TRITON_AVAILABLE", True):
            return skip("triton is not importable")
    except Exception as exc:  # noqa: BLE001
        return skip(f"cannot load {args.triton_src}: {exc}")
    if args.quick:
        args.reps = min(args.reps, 5)
    props = torch.cuda.get_device_properties(0)
    flush = torch.empty(2 * (getattr(props, "L2_cache_size", 0) or (64 << 20)), dtype=torch.uint8, device="cuda")
    ev0, ev1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    print(f"nam-bench-m2rnn-triton: {props.name}, torch {torch.__version__}, source {args.triton_src}")

    with torch.no_grad():
        q, k, v, W, f = inputs(torch, 1, 64, 3, 1)
        out = scan(q, k, v, W, f)[0].double()
        ref = reference(torch, q, k, v, W, f)
        err, mx = float((out - ref).abs().max()), float(ref.abs().max())
        if not err <= 2e-2 * mx:
            print(f"m2rnn-triton  validation FAILED: max |triton - ref| {err:.3g}, max |ref| {mx:.3g}")
            return 1
        print(f"# validation b1 l64 H3: max |triton - float64 ref| {err:.3g} (max |ref| {mx:.3g}, tol 2e-2 * max|ref|)")
        for b, l, H in QUICK if args.quick else FULL:
            q, k, v, W, f = inputs(torch, b, l, H, 2)
            for _ in range(args.warmup):
                scan(q, k, v, W, f)
            torch.cuda.synchronize()
            ts = []
            for i in range(args.reps):
                flush.fill_(0x5A if i & 1 else 0xA5)
                ev0.record()
                scan(q, k, v, W, f)
                ev1.record()
                torch.cuda.synchronize()
                ts.append(ev0.elapsed_time(ev1) * 1e-3)
            ts.sort()
            med = ts[len(ts) // 2] if len(ts) % 2 else 0.5 * (ts[len(ts) // 2 - 1] + ts[len(ts) // 2])
            p90 = ts[math.ceil(0.9 * len(ts)) - 1]
            flops = (2.0 * K * V * V + 7.0 * K * V) * b * l * H
            shape = f'{{"b":{b},"l":{l},"H":{H},"K":64,"V":16,"nq":1,"nk":1,"dtype":"bf16"}}'
            print(f"{'m2rnn':<13} {shape:<64} {'triton-cppmega':<15} {med * 1e3:9.3f} ms [{ts[0] * 1e3:8.3f} .. {p90 * 1e3:8.3f}]  "
                  f"{flops / med / 1e12:8.2f} TFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
