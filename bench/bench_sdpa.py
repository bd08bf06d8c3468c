#!/usr/bin/env python3
"""bench/bench_sdpa.py - PyTorch SDPA (FlashAttention backend) on nam-bench-cuda's attention
shapes, timed the same way, for a side-by-side with build/nam-bench-cuda's attention rows.

usage: bench/bench_sdpa.py [--quick] [--json] [--reps N] [--warmup N]

Needs torch >= 2.3 with CUDA (torch.nn.attention.sdpa_kernel); otherwise it prints one line
saying why it is skipped and exits 0.

Method (as bench/bench_cuda.cu):
  - q (b, s, hq, d), k, v (b, s, hk, d) bf16 uniform [-1, 1), passed to SDPA as (b, h, s, d)
    transposed views (no copy: nam's layout), is_causal as listed, scale 1/sqrt(d);
    GQA through enable_gqa=True, or, if the flash backend refuses it, k/v expanded to hq
    heads before timing (backend then reads "sdpa-flash-kvexp");
  - validation first: query rows [s-4, s) of batch 0 against an fp32 softmax(QK^T)V,
    |sdpa - ref| <= 4e-3 * max|ref| + 1e-2 |ref| (bench_cuda.cu's bf16 attention rule);
  - warm-ups, then reps each between a torch.cuda.Event pair, the L2 flushed before each
    rep (zeroing a buffer of 2x the L2 size, outside the pair); median, min, p90;
  - FLOPs 4 b s s hq d (halved when causal), bytes 2 (q + k + v + out), % of the tensor peak
    measured here: torch.matmul bf16 8192^3 (cuBLAS, fp32 accumulation), timed the same way.
"""
import argparse
import json
import math
import sys

# keep in sync with bx_attention() in bench/bench_cuda.cu: (b, s, hq, hk, d, causal)
FULL = [(1, 2048, 32, 8, 128, True), (16, 1024, 16, 16, 128, True), (8, 2048, 16, 16, 128, True), (4, 4096, 16, 16, 128, True),
        (2, 8192, 16, 16, 128, True), (1, 16384, 16, 16, 128, True), (4, 4096, 16, 4, 128, True), (1, 16384, 16, 4, 128, True)]
QUICK = [(2, 1024, 16, 16, 128, True), (1, 1024, 16, 4, 128, True)]


def skip(why):
    print("nam-bench-sdpa: skipped: " + why)
    return 0


class Bench:
    def __init__(self, torch, args, device):
        self.torch = torch
        self.args = args
        self.device = device
        self.rows = 0
        self.failed = False
        self.peak_tflops = 0.0
        props = torch.cuda.get_device_properties(0)
        l2 = getattr(props, "L2_cache_size", 0) or (64 << 20)
        self.flush = torch.empty(2 * l2, dtype=torch.uint8, device="cuda")
        self.ev0 = torch.cuda.Event(enable_timing=True)
        self.ev1 = torch.cuda.Event(enable_timing=True)

    def measure(self, fn):
        """median, min, p90 in seconds of fn() over reps, after warm-ups"""
        torch = self.torch
        for _ in range(self.args.warmup):
            fn()
        torch.cuda.synchronize()
        ts = []
        for i in range(self.args.reps):
            self.flush.fill_(0x5A if i & 1 else 0xA5)
            self.ev0.record()
            fn()
            self.ev1.record()
            self.ev1.synchronize()
            ts.append(self.ev0.elapsed_time(self.ev1) * 1e-3)
        ts.sort()
        n = len(ts)
        med = ts[n // 2] if n % 2 else 0.5 * (ts[n // 2 - 1] + ts[n // 2])
        return med, ts[0], ts[math.ceil(0.9 * n) - 1]

    def row(self, kernel, shape, backend, status, why="", t=None, flops=0.0, nbytes=0.0):
        shape_s = json.dumps(shape, separators=(",", ":"))
        if status in ("invalid", "error"):
            self.failed = True
        if status != "ok":
            if self.args.json:
                print(("," if self.rows else "") + "\n " + json.dumps({
                    "kernel": kernel, "shape": shape, "backend": backend, "device": self.device, "status": status, "message": why,
                    "median_ms": None, "min_ms": None, "p90_ms": None, "reps": 0, "tflops": None, "gbps": None,
                    "peak_pct": None, "peak_of": "tensor"}), end="")
            else:
                print("%-13s %-64s %-15s %s%s" % (kernel, shape_s, backend, status, ": " + why if why else ""))
            self.rows += 1
            sys.stdout.flush()
            return
        med, mn, p90 = t
        tf = flops / med / 1e12 if flops > 0 else 0.0
        gb = nbytes / med / 1e9 if nbytes > 0 else 0.0
        pct = 100.0 * tf / self.peak_tflops if self.peak_tflops > 0 and flops > 0 else None
        if self.args.json:
            print(("," if self.rows else "") + "\n " + json.dumps({
                "kernel": kernel, "shape": shape, "backend": backend, "device": self.device, "status": "ok",
                "median_ms": round(med * 1e3, 4), "min_ms": round(mn * 1e3, 4), "p90_ms": round(p90 * 1e3, 4), "reps": self.args.reps,
                "tflops": round(tf, 2) if flops > 0 else None, "gbps": round(gb, 2) if nbytes > 0 else None,
                "peak_pct": round(pct, 1) if pct is not None else None, "peak_of": "tensor"}), end="")
        else:
            tfs = "%8.1f" % tf if flops > 0 else "%8s" % "-"
            gbs = "%8.1f" % gb if nbytes > 0 else "%8s" % "-"
            pcts = "%5.1f%% of tensor" % pct if pct is not None else "    - (no tensor peak)"
            print("%-13s %-64s %-15s %9.3f ms [%8.3f .. %8.3f]  %s TFLOP/s  %s GB/s  %s" % (
                kernel, shape_s, backend, med * 1e3, mn * 1e3, p90 * 1e3, tfs, gbs, pcts))
        self.rows += 1
        sys.stdout.flush()

    def peak(self):
        torch = self.torch
        n = 4096 if self.args.quick else 8192
        a = torch.empty(n, n, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
        b = torch.empty(n, n, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1)
        c = torch.empty(n, n, dtype=torch.bfloat16, device="cuda")
        t = self.measure(lambda: torch.matmul(a, b, out=c))
        self.peak_tflops = 2.0 * n ** 3 / t[0] / 1e12
        if self.args.json:
            self.row("peak", {"op": "gemm", "m": n, "n": n, "k": n, "dtype": "bf16", "compute": "fp32"}, "torch.matmul", "ok", t=t,
                     flops=2.0 * n ** 3)
        else:
            print("measured peak: %.1f TFLOP/s tensor (torch.matmul bf16 %d^3)" % (self.peak_tflops, n))

    def attention(self, b, s, hq, hk, d, causal):
        torch = self.torch
        import torch.nn.functional as F
        from torch.nn.attention import SDPBackend, sdpa_kernel
        shape = {"b": b, "s": s, "hq": hq, "hk": hk, "d": d, "causal": causal, "dtype": "bf16"}
        flops = 4.0 * b * s * s * hq * d / (2.0 if causal else 1.0)
        nbytes = 2.0 * (2 * b * s * hq * d + 2 * b * s * hk * d)
        gen = torch.Generator(device="cuda")
        gen.manual_seed(1234 + s + hq + hk)
        q = torch.empty(b, s, hq, d, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1, generator=gen)
        k = torch.empty(b, s, hk, d, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1, generator=gen)
        v = torch.empty(b, s, hk, d, dtype=torch.bfloat16, device="cuda").uniform_(-1, 1, generator=gen)
        qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        backend = "sdpa-flash"
        kw = {"is_causal": causal}
        if hq != hk:
            kw["enable_gqa"] = True
        out = None
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            try:
                out = F.scaled_dot_product_attention(qt, kt, vt, **kw)
            except (RuntimeError, TypeError) as e:
                if hq == hk:
                    return self.row("attention", shape, backend, "not implemented", str(e).splitlines()[0])
                kt = kt.repeat_interleave(hq // hk, dim=1)
                vt = vt.repeat_interleave(hq // hk, dim=1)
                kw.pop("enable_gqa")
                backend = "sdpa-flash-kvexp"
                try:
                    out = F.scaled_dot_product_attention(qt, kt, vt, **kw)
                except RuntimeError as e2:
                    return self.row("attention", shape, backend, "not implemented", str(e2).splitlines()[0])
            torch.cuda.synchronize()
            # validation: rows [s-4, s) of batch 0, every head, fp32 reference
            n = min(4, s)
            qr = q[0, s - n:].float().transpose(0, 1)                                  # (hq, n, d)
            kr = k[0].float().transpose(0, 1).repeat_interleave(hq // hk, dim=0)        # (hq, s, d)
            vr = v[0].float().transpose(0, 1).repeat_interleave(hq // hk, dim=0)
            sc = torch.matmul(qr, kr.transpose(1, 2)) / math.sqrt(d)                   # (hq, n, s)
            if causal:
                qi = torch.arange(s - n, s, device="cuda").view(n, 1)
                kj = torch.arange(s, device="cuda").view(1, s)
                sc = sc.masked_fill(kj > qi, float("-inf"))
            ref = torch.matmul(torch.softmax(sc, dim=-1), vr).transpose(0, 1)           # (n, hq, d)
            got = out.transpose(1, 2)[0, s - n:].float()
            tol = 4e-3 * ref.abs().max() + 1e-2 * ref.abs()
            bad = (got - ref).abs() > tol
            if bool(bad.any()):
                i = int(bad.flatten().nonzero()[0])
                return self.row("attention", shape, backend, "invalid", "row group %d..%d: element %d is %g, reference %g" % (
                    s - n, s - 1, i, float(got.flatten()[i]), float(ref.flatten()[i])))
            t = self.measure(lambda: F.scaled_dot_product_attention(qt, kt, vt, **kw))
        self.row("attention", shape, backend, "ok", t=t, flops=flops, nbytes=nbytes)


def main():
    ap = argparse.ArgumentParser(description="PyTorch SDPA flash-attention timings on nam-bench-cuda's attention shapes")
    ap.add_argument("--quick", action="store_true", help="smoke run: 5 reps, 1 warm-up, small shapes")
    ap.add_argument("--json", action="store_true", help="one JSON array, one object per row")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    args = ap.parse_args()
    args.reps = args.reps if args.reps is not None else (5 if args.quick else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    if not 1 <= args.reps <= 1000 or not 0 <= args.warmup <= 100:
        ap.error("--reps must be 1..1000 and --warmup 0..100")
    try:
        import torch
    except Exception as e:  # noqa: BLE001 - any import failure means "no torch here"
        return skip("torch is not importable (%s: %s)" % (type(e).__name__, e))
    if not torch.cuda.is_available():
        return skip("torch %s sees no CUDA device" % torch.__version__)
    try:
        import torch.nn.attention as tna
    except ImportError:
        tna = None
    if tna is None or not hasattr(tna, "sdpa_kernel"):
        return skip("torch %s has no torch.nn.attention.sdpa_kernel (needs torch >= 2.3)" % torch.__version__)
    props = torch.cuda.get_device_properties(0)
    device = "%s, %d SMs, %.1f GiB, torch %s, CUDA %s" % (props.name, props.multi_processor_count, props.total_memory / 2 ** 30,
                                                         torch.__version__, torch.version.cuda)
    bench = Bench(torch, args, device)
    if args.json:
        print("[", end="")
    else:
        print("nam-bench-sdpa: %s" % device)
        print("# timing: median [min .. p90] of %d reps after %d warm-up(s), torch.cuda.Event pairs, L2 flushed before each rep" % (
            args.reps, args.warmup))
    bench.peak()
    if not args.json:
        print("%-13s %-64s %-15s %12s %23s %18s %15s  %s" % ("kernel", "shape", "backend", "median ms", "[min .. p90] ms", "TFLOP/s", "GB/s",
                                                           "% of peak"))
    for sh in (QUICK if args.quick else FULL):
        try:
            bench.attention(*sh)
        except torch.cuda.OutOfMemoryError as e:
            bench.row("attention", dict(zip(("b", "s", "hq", "hk", "d", "causal"), sh)), "sdpa-flash", "error", str(e).splitlines()[0])
    if args.json:
        print("\n]")
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
