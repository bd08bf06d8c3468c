#!/usr/bin/env python3
"""Cross-check nam_ssd and nam_conv1d against code we did not write in C.

Reads the cases written by `build/test_ssd --dump DIR` (DIR/manifest.txt, raw little-endian
f32 files <case>_<tensor>.f32) and recomputes them in float64 two independent ways:
  - torch: the chunked SSD form of the Mamba-2 paper (ssd_minimal: segment sums, intra-chunk
    C B^T L X, chunk states, inter-chunk recurrence), with a chunk of 16 (nam used its own);
  - numpy: the plain sequential recurrence over tokens, vectorised over (b, h, p, n).
conv1d: torch.nn.functional.conv1d (groups = channels) over [state, x].
Tolerance: max |nam - oracle| <= 2e-5 * max(1, max |oracle|) (nam computes in f32).

Usage: /usr/bin/python3 tests/xcheck_ssd.py DIR
Protocol: one line per check, "ok ...", "FAIL ...: why" or "skip ...: reason"; last line
"xcheck_ssd: N passed, M failed"; exit status 1 on any failure."""
import xcheck_common
from xcheck_common import close

run = xcheck_common.start("ssd")   # a skip line without torch/numpy, usage without DIR
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

load = run.load
report = run.report


def segsum(x):
    """x (..., T) -> (..., T, T) with out[i, j] = sum x[j+1..i] for j <= i, -inf above."""
    T = x.shape[-1]
    xe = x.unsqueeze(-1).expand(*x.shape, T)
    xe = xe.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=-1), 0)
    s = torch.cumsum(xe, dim=-2)
    return s.masked_fill(~torch.tril(torch.ones(T, T, dtype=torch.bool), diagonal=0), float("-inf"))


def ssd_chunked(X, A, B, C, Q, init):
    """torch, float64. X (b, l, h, p) already times dt; A (b, l, h) = A*dt; B, C (b, l, h, n)."""
    b, l, h, p = X.shape
    pad = (-l) % Q
    if pad:   # zero tokens: dt = 0 leaves the state alone
        X = F.pad(X, (0, 0, 0, 0, 0, pad))
        A = F.pad(A, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    c = X.shape[1] // Q
    X, B, C = [t.reshape(b, c, Q, *t.shape[2:]) for t in (X, B, C)]
    A = A.reshape(b, c, Q, h).permute(0, 3, 1, 2)          # b h c Q
    Acs = torch.cumsum(A, dim=-1)
    L = torch.exp(segsum(A))
    Y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C, B, L, X)
    decay_states = torch.exp(Acs[..., -1:] - Acs)
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_states, X)
    states = torch.cat([init.unsqueeze(1), states], dim=1)
    decay_chunk = torch.exp(segsum(F.pad(Acs[..., -1], (1, 0))))
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    states, final = new_states[:, :-1], new_states[:, -1]
    Y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C, states, torch.exp(Acs))
    Y = (Y_diag + Y_off).reshape(b, c * Q, h, p)[:, :l]
    return Y, final


def ssd_sequential(x, dt, A, Bh, Ch, init):
    """numpy, float64: state = exp(dt A) state + dt B (x) x; y = C . state, token by token."""
    b, l, h, p = x.shape
    st = init.copy()                                       # b h p n
    y = np.empty_like(x)
    for t in range(l):
        dA = np.exp(dt[:, t, :] * A[None, :])              # b h
        st = dA[:, :, None, None] * st + (dt[:, t, :, None, None] * x[:, t, :, :, None]) * Bh[:, t, :, None, :]
        y[:, t] = np.einsum("bhpn,bhn->bhp", st, Ch[:, t])
    return y, st


for name, kv in run.cases():
    if kv["kind"] == "conv1d":
        b, l, c, w = (int(kv[k]) for k in ("b", "l", "c", "w"))
        x = torch.from_numpy(load(f"{name}_x").reshape(b, l, c))
        wt = torch.from_numpy(load(f"{name}_weight").reshape(c, w))
        bias = load(f"{name}_bias")
        bias = torch.from_numpy(bias) if bias is not None else None
        st_in = load(f"{name}_state_in")
        out = load(f"{name}_out").reshape(b, l, c)
        hist = torch.from_numpy(st_in.reshape(b, c, w - 1)) if st_in is not None else torch.zeros(b, c, w - 1, dtype=torch.float64)
        seq = torch.cat([hist, x.transpose(1, 2)], dim=2)            # b c (w-1+l)
        y = F.conv1d(seq, wt.unsqueeze(1), bias, groups=c).transpose(1, 2)
        if kv.get("silu") == "1":
            y = F.silu(y)
        ok, why = close(out, y.numpy(), 2e-5, "out")
        report(ok, f"xcheck conv1d {name} (b {b} l {l} c {c} w {w}) vs torch conv1d groups=c", why)
        st_out = load(f"{name}_state_out")
        if st_out is not None:
            want = seq[:, :, -(w - 1):].numpy()
            serr = float(np.abs(st_out.reshape(b, c, w - 1) - want).max())
            report(serr == 0, f"xcheck conv1d {name} conv_state after == the last w-1 inputs", f"max err {serr:.3g}")
        continue
    b, l, h, p, g, n = (int(kv[k]) for k in ("b", "l", "h", "p", "g", "n"))
    x = load(f"{name}_x").reshape(b, l, h, p)
    dt = load(f"{name}_dt").reshape(b, l, h)
    A = load(f"{name}_A").reshape(h)
    B = load(f"{name}_B").reshape(b, l, g, n)
    C = load(f"{name}_C").reshape(b, l, g, n)
    D, z, bias = load(f"{name}_D"), load(f"{name}_z"), load(f"{name}_dt_bias")
    init, out, fin = load(f"{name}_initial_states"), load(f"{name}_out").reshape(b, l, h, p), load(f"{name}_final_states")
    if bias is not None:
        dt = dt + bias.reshape(h)
    if kv.get("softplus") == "1":
        dt = np.where(dt > 20, dt, np.log1p(np.exp(np.minimum(dt, 20))))
    lo, hi = float(kv.get("dt_min", 0)), float(kv.get("dt_max", 0))
    if lo != 0 or hi != 0:                               # Mamba's dt_limit = (dt_min, dt_max or inf)
        dt = np.clip(dt, lo, hi if hi > 0 else np.inf)
    Bh = np.repeat(B, h // g, axis=2)                    # head i uses group i // (h / g)
    Ch = np.repeat(C, h // g, axis=2)
    init = init.reshape(b, h, p, n) if init is not None else np.zeros((b, h, p, n))
    Yt, Ft = ssd_chunked(torch.from_numpy(x * dt[..., None]), torch.from_numpy(A[None, None, :] * dt),
                         torch.from_numpy(Bh), torch.from_numpy(Ch), 16, torch.from_numpy(init))
    Ys, Fs = ssd_sequential(x, dt, A, Bh, Ch, init)
    Yt, Ft = Yt.numpy(), Ft.numpy()
    for Y in (Yt, Ys):
        if D is not None:
            Y += (D.reshape(1, 1, h, 1) if D.size == h else D.reshape(1, 1, h, p)) * x
        if z is not None:
            zz = z.reshape(b, l, h, p)
            Y *= zz / (1 + np.exp(-zz))
    shape = f"b {b} l {l} h {h} p {p} g {g} n {n}"
    ok, why = close(Yt, Ys, 2e-5, "torch chunked vs numpy sequential")
    report(ok, f"xcheck ssd {name}: the two oracles agree", why)
    ok, why = close(out, Yt, 2e-5, "out")
    report(ok, f"xcheck ssd {name} ({shape}) vs torch chunked SSD", why)
    ok, why = close(out, Ys, 2e-5, "out")
    report(ok, f"xcheck ssd {name} ({shape}) vs numpy sequential recurrence", why)
    if fin is not None:
        ok, why = close(fin.reshape(b, h, p, n), Fs, 2e-5, "final_states")
        report(ok, f"xcheck ssd {name} final states vs numpy sequential", why)
        ok, why = close(fin.reshape(b, h, p, n), Ft, 2e-5, "final_states")
        report(ok, f"xcheck ssd {name} final states vs torch chunked", why)
run.done()
