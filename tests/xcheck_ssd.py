#!/usr/bin/env python3
"""Cross-check nam_ssd against torch (float64), computed here with the chunked SSD form
(the Mamba-2 paper's ssd_minimal algorithm: segment sums, intra-chunk C B^T L X, chunk
states, inter-chunk recurrence). Reads the cases written by `build/test_ssd --dump DIR`.
Usage: /usr/bin/python3 tests/xcheck_ssd.py DIR  (protocol: ok / FAIL / skip lines)."""
import os
import sys

try:
    import numpy as np
    import torch
except Exception as exc:  # noqa: BLE001
    print(f"skip xcheck ssd: torch/numpy not available ({exc})")
    sys.exit(0)

d = sys.argv[1]
failed = 0


def segsum(x):
    """x (..., T) -> (..., T, T) with out[i, j] = sum x[j+1..i] for j <= i, -inf above."""
    T = x.shape[-1]
    xe = x.unsqueeze(-1).expand(*x.shape, T)
    mask = torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1)
    xe = xe.masked_fill(~mask, 0)
    s = torch.cumsum(xe, dim=-2)
    return s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=0), float("-inf"))


def ssd_chunked(X, A, B, C, Q, init):
    """X (b, l, h, p) already times dt; A (b, l, h) = A*dt; B, C (b, l, h, n)."""
    b, l, h, p = X.shape
    pad = (-l) % Q
    if pad:
        X = torch.nn.functional.pad(X, (0, 0, 0, 0, 0, pad))
        A = torch.nn.functional.pad(A, (0, 0, 0, pad))
        B = torch.nn.functional.pad(B, (0, 0, 0, 0, 0, pad))
        C = torch.nn.functional.pad(C, (0, 0, 0, 0, 0, pad))
    c = X.shape[1] // Q
    X, B, C = [t.reshape(b, c, Q, *t.shape[2:]) for t in (X, B, C)]
    A = A.reshape(b, c, Q, h).permute(0, 3, 1, 2)          # b h c Q
    Acs = torch.cumsum(A, dim=-1)
    L = torch.exp(segsum(A))
    Y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, L, X)
    decay_states = torch.exp(Acs[..., -1:] - Acs)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, X)
    states = torch.cat([init.unsqueeze(1), states], dim=1)
    decay_chunk = torch.exp(segsum(torch.nn.functional.pad(Acs[..., -1], (1, 0))))
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final = new_states[:, :-1], new_states[:, -1]
    Y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(Acs))
    Y = (Y_diag + Y_off).reshape(b, c * Q, h, p)[:, :l]
    return Y, final


def load_any(name):
    path = os.path.join(d, f"{name}.f32")
    if not os.path.exists(path):
        return None
    return torch.from_numpy(np.fromfile(path, dtype="<f4").astype(np.float64))


def report(ok, text):
    global failed
    print(("ok" if ok else "FAIL") + " " + text)
    failed += not ok


for line in open(os.path.join(d, "manifest.txt")):
    f = line.split()
    if not f or f[0] != "case":
        continue
    name = f[1]
    kv = dict(x.split("=", 1) for x in f[2:])
    if kv["kind"] == "conv1d":
        b, l, c, w = (int(kv[k]) for k in ("b", "l", "c", "w"))
        x = load_any(f"{name}_x").view(b, l, c)
        wt = load_any(f"{name}_weight").view(c, w)
        bias = load_any(f"{name}_bias")
        st_in = load_any(f"{name}_state_in")
        out = load_any(f"{name}_out").view(b, l, c)
        hist = st_in.view(b, c, w - 1) if st_in is not None else torch.zeros(b, c, w - 1, dtype=torch.float64)
        seq = torch.cat([hist, x.transpose(1, 2)], dim=2)            # b c (w-1+l)
        y = torch.nn.functional.conv1d(seq, wt.unsqueeze(1), bias, groups=c).transpose(1, 2)
        if kv.get("silu") == "1":
            y = torch.nn.functional.silu(y)
        err = (out - y).abs().max().item()
        report(err <= 1e-5 * max(1.0, y.abs().max().item()), f"xcheck conv1d {name} vs torch.nn.functional.conv1d (groups=c): max err {err:.3g}")
        st_out = load_any(f"{name}_state_out")
        if st_out is not None:
            want = seq[:, :, -(w - 1):]
            serr = (st_out.view(b, c, w - 1) - want).abs().max().item()
            report(serr == 0, f"xcheck conv1d {name} carried state == the last w-1 inputs: max err {serr:.3g}")
        continue
    b, l, h, p, g, n = (int(kv[k]) for k in ("b", "l", "h", "p", "g", "n"))
    x = load_any(f"{name}_x").view(b, l, h, p)
    dt = load_any(f"{name}_dt").view(b, l, h)
    A = load_any(f"{name}_A").view(h)
    B = load_any(f"{name}_B").view(b, l, g, n)
    C = load_any(f"{name}_C").view(b, l, g, n)
    D = load_any(f"{name}_D")
    z = load_any(f"{name}_z")
    bias = load_any(f"{name}_dt_bias")
    init = load_any(f"{name}_initial_states")
    out = load_any(f"{name}_out").view(b, l, h, p)
    fin = load_any(f"{name}_final_states")
    if bias is not None:
        dt = dt + bias.view(h)
    if kv.get("softplus") == "1":
        dt = torch.nn.functional.softplus(dt)
    lo, hi = float(kv.get("dt_min", 0)), float(kv.get("dt_max", 0))
    if lo != 0 or hi != 0:
        dt = dt.clamp(min=lo, max=hi if hi > 0 else None)
    rep = h // g
    Bh = B.repeat_interleave(rep, dim=2)
    Ch = C.repeat_interleave(rep, dim=2)
    init = init.view(b, h, p, n) if init is not None else torch.zeros(b, h, p, n, dtype=torch.float64)
    Y, final = ssd_chunked(x * dt.unsqueeze(-1), A * dt, Bh, Ch, 16, init)
    if D is not None:
        Y = Y + (D.view(1, 1, h, 1) if D.numel() == h else D.view(1, 1, h, p)) * x
    if z is not None:
        Y = Y * torch.nn.functional.silu(z.view(b, l, h, p))
    scale = max(1.0, Y.abs().max().item())
    err = (out - Y).abs().max().item()
    report(err <= 2e-5 * scale, f"xcheck ssd {name} (b {b} l {l} h {h} p {p} g {g} n {n}) vs torch chunked SSD: max err {err:.3g} (scale {scale:.3g})")
    if fin is not None:
        ferr = (fin.view(b, h, p, n) - final).abs().max().item()
        report(ferr <= 2e-5 * max(1.0, final.abs().max().item()), f"xcheck ssd {name} final states vs torch: max err {ferr:.3g}")
sys.exit(1 if failed else 0)
