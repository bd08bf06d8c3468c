#!/usr/bin/python3
"""tests/xcheck_attention.py - cross-check nam_attention against PyTorch in float64.

    build/test_attention --dump DIR && /usr/bin/python3 tests/xcheck_attention.py DIR

Reads DIR/manifest.txt (one case per line: name b sq sk hq hk d causal align scale) and the
raw little-endian f32 files DIR/<name>.{q,k,v,out,refout} ((b, s, h, d) row-major; out is
nam's fast CPU output, refout NAM_BACKEND_CPU_REF's; each is checked). The reference is written here independently of nam: an explicit
softmax(q k^T * scale + mask) v in torch float64 (torch 1.13 has no public
scaled_dot_product_attention), GQA by repeat_interleave of the kv heads, and the causal
mask from torch.tril:
    bottom-right (align 0, FlashAttention >= 2.1): tril(ones(sq, sk), diagonal=sk - sq)
    top-left     (align 1, PyTorch SDPA is_causal): tril(ones(sq, sk), diagonal=0)
A query row whose mask is all False gets 0 (nam's documented convention; softmax would
give NaN). Pass: max |out - ref| <= 1e-5 + 1e-5 |ref| (f32 inputs, fp32 math in nam).

Prints one protocol line per case (ok / FAIL), or one skip line when torch or numpy is
missing, then "N passed, M failed"; exit status 1 when anything failed.
"""
import os
import sys


def main(argv):
    if len(argv) != 2:
        print("usage: xcheck_attention.py DIR", file=sys.stderr)
        return 2
    try:
        import numpy as np
        import torch
    except ImportError as e:  # the only reason to skip
        print("skip xcheck attention: torch/numpy not importable (%s)" % e)
        return 0
    d = argv[1]
    man = os.path.join(d, "manifest.txt")
    passed = failed = 0
    with open(man) as f:
        lines = [l.split() for l in f if l.strip() and not l.startswith("#")]
    if not lines:
        print("FAIL xcheck attention: %s lists no cases" % man)
        return 1
    for fields in lines:
        name = fields[0]
        b, sq, sk, hq, hk, hd, causal, align = (int(x) for x in fields[1:9])
        scale = float(fields[9])

        def load(ext, s, h):
            a = np.fromfile(os.path.join(d, "%s.%s.f32" % (name, ext)), dtype="<f4")
            if a.size != b * s * h * hd:
                raise ValueError("%s.%s.f32 holds %d floats, expected %d" % (name, ext, a.size, b * s * h * hd))
            return torch.from_numpy(a.astype(np.float64)).reshape(b, s, h, hd)

        try:
            q, k, v = load("q", sq, hq), load("k", sk, hk), load("v", sk, hk)
            outs = [("cpu", load("out", sq, hq)), ("cpu-ref", load("refout", sq, hq))]
        except (OSError, ValueError) as e:
            print("FAIL xcheck %s: %s" % (name, e))
            failed += 1
            continue
        g = hq // hk
        qh = q.permute(0, 2, 1, 3)                                   # (b, hq, sq, d)
        kh = k.permute(0, 2, 1, 3).repeat_interleave(g, dim=1)       # (b, hq, sk, d)
        vh = v.permute(0, 2, 1, 3).repeat_interleave(g, dim=1)
        sc = scale if scale != 0.0 else 1.0 / float(hd) ** 0.5
        logits = torch.matmul(qh, kh.transpose(-1, -2)) * sc         # (b, hq, sq, sk)
        if causal:
            diag = sk - sq if align == 0 else 0
            mask = torch.tril(torch.ones(sq, sk, dtype=torch.bool), diagonal=diag)
        else:
            mask = torch.ones(sq, sk, dtype=torch.bool)
        logits = logits.masked_fill(~mask, float("-inf"))
        p = torch.softmax(logits, dim=-1)
        empty = ~mask.any(dim=-1)                                    # rows that see no key
        p = p.masked_fill(empty[:, None], 0.0)
        ref = torch.matmul(p, vh).permute(0, 2, 1, 3)                # (b, sq, hq, d)
        nempty = int(empty.sum())
        for backend, out in outs:
            err = (out - ref).abs()
            tol = 1e-5 + 1e-5 * ref.abs()
            worst = float(err.max())
            if bool(torch.isfinite(out).all()) and bool((err <= tol).all()):
                print("ok xcheck %s [%s] (b %d sq %d sk %d hq %d hk %d d %d causal %d align %s, %d empty rows): max |nam - torch f64| = %.3g"
                      % (name, backend, b, sq, sk, hq, hk, hd, causal, ("top-left" if align else "bottom-right") if causal else "-", nempty, worst))
                passed += 1
            else:
                print("FAIL xcheck %s [%s]: max |nam - torch f64| = %.3g exceeds 1e-5 + 1e-5 |ref| (or non-finite output)" % (name, backend, worst))
                failed += 1
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
