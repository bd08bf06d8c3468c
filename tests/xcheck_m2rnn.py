#!/usr/bin/env python3
"""Cross-check nam_m2rnn against references written here from the M2RNN equations.

Reads the cases written by `build/test_m2rnn --dump DIR` (DIR/manifest.txt, raw little-endian
f32 files <case>_<tensor>.f32) and recomputes each in float64 two independent ways:
  - torch: whole-state matrix form per token, heads broadcast with repeat_interleave,
        f  = exp(-exp(A_log) * softplus(a + dt_bias))          (torch.nn.functional.softplus)
        S  = f S + (1 - f) tanh(S @ W + k v^T)                   (torch.matmul over (b, n))
        y  = S^T q + D * v;
  - numpy: row by row (each row i of S is tanh(S_i W + k_i v^T), blended), heads mapped by
    index h // (n // n_x), the gate with log1p/exp, y as an explicit sum over rows.
Tolerance: max |nam - oracle| <= tol * max(1, max |oracle|), the two oracles to 1e-12. nam
computes in fp32 (a rational tanh of <= 4e-7 absolute error, K-term fp32 dot products), and
each step's error is carried by the recurrence, which can expand (W near I, gates near 0):
  tol = max(4e-6, G * (4e-7 * l + 4 * 2^-24 * sqrt(l * K))),
  G = max(1, max |change| / 1e-5): the torch oracle rerun from the initial state moved by
      1e-5 (random signs), change over out and final state (the growth of a perturbation).
  An upper bound (every step's error taken to grow by the whole G): on seeds 1..20 nam's
  error was 2e-7..5e-7 of the scale, 4e-6 held on out but not always on the final state
  (7.8e-6 at the default seed), and tol came out at 4e-6..6e-3.

Usage: /usr/bin/python3 tests/xcheck_m2rnn.py DIR
Protocol: one line per check, "ok ...", "FAIL ...: why" or "skip ...: reason"; last line
"xcheck_m2rnn: N passed, M failed"; exit status 1 on any failure."""
import xcheck_common
from xcheck_common import close

run = xcheck_common.start("m2rnn")   # a skip line without torch/numpy, usage without DIR
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

load = run.load
report = run.report


def m2rnn_torch(q, k, v, W, a, A_log, dt_bias, D, S):
    """torch float64. q (b,l,nq,K) k (b,l,nk,K) v (b,l,nv,V) W (nw,V,V) a (b,l,nf); S (b,n,K,V)."""
    n = max(q.shape[2], k.shape[2], v.shape[2], W.shape[0], a.shape[2])
    q = q.repeat_interleave(n // q.shape[2], dim=2)
    k = k.repeat_interleave(n // k.shape[2], dim=2)
    v = v.repeat_interleave(n // v.shape[2], dim=2)
    W = W.repeat_interleave(n // W.shape[0], dim=0)
    a = a.repeat_interleave(n // a.shape[2], dim=2)
    f = torch.exp(-torch.exp(A_log) * F.softplus(a + dt_bias))           # (b, l, n)
    b, l = q.shape[:2]
    y = torch.empty(b, l, n, v.shape[3], dtype=torch.float64)
    for t in range(l):
        ft = f[:, t, :, None, None]
        cand = torch.tanh(torch.matmul(S, W[None]) + k[:, t, :, :, None] * v[:, t, :, None, :])
        S = ft * S + (1 - ft) * cand
        y[:, t] = torch.matmul(q[:, t, :, None, :], S).squeeze(-2) + D[None] * v[:, t]
    return y, S


def m2rnn_numpy(q, k, v, W, a, A_log, dt_bias, D, S0):
    """numpy float64, row by row, heads by index."""
    b, l, nq, K = q.shape
    nk, nv, V, nw, nf = k.shape[2], v.shape[2], v.shape[3], W.shape[0], a.shape[2]
    n = max(nq, nk, nv, nw, nf)
    y = np.zeros((b, l, n, V))
    S = S0.copy()
    for bi in range(b):
        for h in range(n):
            hq, hk, hv, hw, hf = h // (n // nq), h // (n // nk), h // (n // nv), h // (n // nw), h // (n // nf)
            s = S[bi, h]
            for t in range(l):
                x = a[bi, t, hf] + dt_bias[h]
                sp = x if x > 20 else np.log1p(np.exp(x))
                f = np.exp(-np.exp(A_log[h]) * sp)
                new = np.empty_like(s)
                for i in range(K):
                    new[i] = f * s[i] + (1 - f) * np.tanh(s[i] @ W[hw] + k[bi, t, hk, i] * v[bi, t, hv])
                s = new
                y[bi, t, h] = sum(q[bi, t, hq, i] * s[i] for i in range(K)) + D[h] * v[bi, t, hv]
            S[bi, h] = s
    return y, S


for name, kv in run.cases():
    b, l, nq, nk, nv, nw, nf, K, V = (int(kv[x]) for x in ("b", "l", "nq", "nk", "nv", "nw", "nf", "K", "V"))
    n = max(nq, nk, nv, nw, nf)
    q = load(f"{name}_q").reshape(b, l, nq, K)
    k = load(f"{name}_k").reshape(b, l, nk, K)
    v = load(f"{name}_v").reshape(b, l, nv, V)
    W = load(f"{name}_W").reshape(nw, V, V)
    a = load(f"{name}_a").reshape(b, l, nf)
    A_log = load(f"{name}_A_log").reshape(n)
    dt_bias, D, init = load(f"{name}_dt_bias"), load(f"{name}_D"), load(f"{name}_initial_state")
    out, fin = load(f"{name}_out").reshape(b, l, n, V), load(f"{name}_final_state")
    dt_bias = dt_bias.reshape(n) if dt_bias is not None else np.zeros(n)
    D = D.reshape(n, V) if D is not None else np.zeros((n, V))
    S0 = init.reshape(b, n, K, V) if init is not None else np.zeros((b, n, K, V))
    T = torch.from_numpy
    yt, St = m2rnn_torch(T(q), T(k), T(v), T(W), T(a), T(A_log), T(dt_bias), T(D), T(S0.copy()))
    yt, St = yt.numpy(), St.numpy()
    yn, Sn = m2rnn_numpy(q, k, v, W, a, A_log, dt_bias, D, S0)
    delta = 1e-5
    moved = S0 + delta * np.where(np.random.default_rng(1).random(S0.shape) < 0.5, -1.0, 1.0)
    ym, Sm = m2rnn_torch(T(q), T(k), T(v), T(W), T(a), T(A_log), T(dt_bias), T(D), T(moved))
    G = max(1.0, np.abs(ym.numpy() - yt).max() / delta, np.abs(Sm.numpy() - St).max() / delta)
    tol = max(4e-6, G * (4e-7 * l + 4 * 2.0 ** -24 * (l * K) ** 0.5))
    shape = f"b {b} l {l} heads q{nq} k{nk} v{nv} w{nw} f{nf} K {K} V {V}"
    ok, why = close(yt, yn, 1e-12)
    if ok:
        ok, why = close(St, Sn, 1e-12)
    report(ok, f"xcheck m2rnn {name}: the torch and numpy oracles agree", why)
    ok, why = close(out, yt, tol)
    report(ok, f"xcheck m2rnn {name} ({shape}) out vs torch float64", why)
    ok, why = close(out, yn, tol)
    report(ok, f"xcheck m2rnn {name} out vs numpy row-by-row float64", why)
    if fin is not None:
        ok, why = close(fin.reshape(b, n, K, V), St, tol)
        report(ok, f"xcheck m2rnn {name} final_state vs torch float64", why)
run.done()
