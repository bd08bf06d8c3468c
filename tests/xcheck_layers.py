#!/usr/bin/env python3
"""Cross-check nam's layer ops against torch float64, written here from their equations.

Reads the cases written by `build/test_layers --dump DIR` (DIR/manifest.txt, raw little-endian
f32 files <case>_<tensor>.f32) and recomputes each:
  - rmsnorm: g = x, or x * silu(z) when gated (torch.nn.functional.silu);
             per group of group_size features (0 = all n): out = g * rsqrt(mean(g^2) + eps) * w,
             eps 0 meaning 1e-5; the groups by reshape (t, n / gs, gs);
  - rope:    complex form: each pair (a, b) as a + ib times exp(i p theta_j), theta_j =
             base^(-2j / rot_dim) (torch.polar), pairs split as halves or adjacent
             (interleaved), the features past rot_dim unchanged.
Tolerance (rmsnorm): |nam - torch| <= 8 u |torch| + 8 * 2^-24 * max |torch|, u the unit roundoff of the
storage type (2^-24 f32, 2^-11 f16, 2^-8 bf16): nam's fp32 path rounds a few times, then once
to the storage type. rope (f32): 8 * 2^-24 * (|torch| + max |torch|).

Usage: /usr/bin/python3 tests/xcheck_layers.py DIR
Protocol: one line per check, "ok ...", "FAIL ...: why" or "skip ...: reason"; last line
"xcheck_layers: N passed, M failed"; exit status 1 on any failure."""
import xcheck_common

run = xcheck_common.start("layers")   # a skip line without torch/numpy, usage without DIR
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

UNIT = {"f32": 2.0 ** -24, "f16": 2.0 ** -11, "bf16": 2.0 ** -8}

def rope(name, kv):
    b, s, h, d = (int(kv[k]) for k in ("b", "s", "h", "d"))
    rot = int(kv["rot_dim"]) or d
    base = float(kv["base"]) or 10000.0
    x = torch.from_numpy(run.load(f"{name}_x").reshape(b, s, h, d))
    out = run.load(f"{name}_out").reshape(b, s, h, d)
    half = rot // 2
    pos = torch.arange(s, dtype=torch.float64) + int(kv["pos_offset"])
    theta = base ** (-2.0 * torch.arange(half, dtype=torch.float64) / rot)
    turn = torch.polar(torch.ones(s, half, dtype=torch.float64), pos[:, None] * theta[None, :])[None, :, None, :]
    xr = x[..., :rot]
    if kv["interleaved"] == "1":
        pairs = torch.complex(xr[..., 0::2], xr[..., 1::2]) * turn
        rotated = torch.stack((pairs.real, pairs.imag), dim=-1).reshape(b, s, h, rot)
    else:
        pairs = torch.complex(xr[..., :half], xr[..., half:]) * turn
        rotated = torch.cat((pairs.real, pairs.imag), dim=-1)
    y = torch.cat((rotated, x[..., rot:]), dim=-1).numpy()
    tol = 8 * 2.0 ** -24 * (np.abs(y) + np.abs(y).max())
    err = np.abs(out - y)
    run.report(bool((err <= tol).all()), f"xcheck layers {name} rope b {b} s {s} h {h} d {d} rot {rot} offset {kv['pos_offset']} "
               f"interleaved {kv['interleaved']} vs torch float64 (complex form)", f"max err {err.max():.3g}, max tol {tol.max():.3g}")


for name, kv in run.cases():
    if kv.get("op") == "rope":
        rope(name, kv)
        continue
    if kv.get("op") != "rmsnorm":
        run.report(False, f"xcheck layers {name}", f"unknown op {kv.get('op')}")
        continue
    t, n, gs = int(kv["t"]), int(kv["n"]), int(kv["group_size"])
    eps = float(kv["eps"]) or 1e-5
    gs = gs or n
    x = torch.from_numpy(run.load(f"{name}_x").reshape(t, n))
    z = run.load(f"{name}_z")
    w = run.load(f"{name}_weight")
    out = run.load(f"{name}_out").reshape(t, n)
    g = x * F.silu(torch.from_numpy(z.reshape(t, n))) if z is not None else x
    g = g.reshape(t, n // gs, gs)
    y = (g * torch.rsqrt(g.pow(2).mean(dim=-1, keepdim=True) + eps)).reshape(t, n)
    if w is not None:
        y = y * torch.from_numpy(w)
    y = y.numpy()
    u = UNIT[kv["storage"]]
    tol = 8 * u * np.abs(y) + 8 * 2.0 ** -24 * np.abs(y).max()
    err = np.abs(out - y)
    worst = int(np.argmax(err / tol))
    ok = bool((err <= tol).all())
    run.report(ok, f"xcheck layers {name} rmsnorm t {t} n {n} group {gs} gated {kv['gated']} {kv['storage']} vs torch float64",
               f"max err {err.max():.3g}, worst {err[np.unravel_index(worst, err.shape)]:.3g} at {worst} "
               f"(tol there {tol.flat[worst]:.3g})")
run.done()
