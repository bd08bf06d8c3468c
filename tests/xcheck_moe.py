#!/usr/bin/python3
"""tests/xcheck_moe.py - cross-check nam's MoE kernels against torch (Megatron semantics).

usage: /usr/bin/python3 tests/xcheck_moe.py DIR     (DIR written by build/test_moe --dump DIR)

For every case in DIR/manifest.txt this recomputes, with torch and independently of nam:
  - routing: Megatron's topk_routing_with_score_function (pure-torch branch): softmax
    (top-k on logits then softmax over the k, or pre-softmax), sigmoid (+ expert_bias for the
    selection only, renormalised by sum + 1e-20 when k > 1), scaling factor; giving the
    dense routing_probs (T, E) and routing_map (T, E). nam's indices must match torch.topk's
    (same order), its weights within 1e-6;
  - capacity: ceil(T*k/E*cf) rows per expert, kept in token order ("position" policy:
    cumsum of the routing map along tokens <= capacity);
  - permutation: Megatron's permute with a routing map: routing_map.T flattened, stable
    argsort (descending), first num_out -> sorted_indices = index % T; tokens.index_select.
    nam's rows // k must equal sorted_indices, and nam's permuted rows must be bit-exact;
  - expert FFN: per expert segment in float64: silu(x W1^T) * (x W3^T) W2^T or
    relu(x W1^T)^2 W2^T; nam's f32 output within 1e-4 * max|ref|;
  - combine: Megatron's unpermute: probs.T.masked_select(map.T), scatter_add_ into zeros;
    nam's output within 1e-4 * max|ref| of the all-torch layer, and within 1e-6 * max|ref|
    of torch's combine applied to nam's own expert outputs.
Prints "ok ..." / "FAIL ...: why" lines and "xcheck_moe: N passed, M failed"; exit 1 on failure.
"""
import math
import os
import sys

passed = 0
failed = 0


def check(desc, ok, why=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok %s" % desc)
    else:
        failed += 1
        print("FAIL %s: %s" % (desc, why))


def parse_manifest(path):
    cases = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split()
            if parts[0] != "case":
                continue
            c = {"name": parts[1]}
            for kv in parts[2:]:
                k, v = kv.split("=", 1)
                c[k] = v
            for k in ("T", "E", "k", "H", "F", "pre_softmax", "bias", "num_rows", "num_dropped"):
                c[k] = int(c[k])
            c["scaling"] = float(c["scaling"])
            c["capacity_factor"] = float(c["capacity_factor"])
            cases.append(c)
    return cases


def main():
    if len(sys.argv) != 2:
        sys.stderr.write("usage: xcheck_moe.py DIR\n")
        return 2
    try:
        import numpy as np
        import torch
    except Exception as exc:  # noqa: BLE001 - any import failure means "cannot cross-check"
        print("skip xcheck moe: torch not available (%s)" % exc)
        return 0
    d = sys.argv[1]
    cases = parse_manifest(os.path.join(d, "manifest.txt"))
    if not cases:
        check("xcheck moe: manifest lists cases", False, "no case in %s/manifest.txt" % d)

    def load(c, field, dtype, shape):
        a = np.fromfile(os.path.join(d, "%s.%s" % (c["name"], field)), dtype=dtype)
        return torch.from_numpy(a.reshape(shape).copy())

    for c in cases:
        name, T, E, k, H, F = c["name"], c["T"], c["E"], c["k"], c["H"], c["F"]
        n_rows = c["num_rows"]
        logits = load(c, "logits.f32", "<f4", (T, E))
        bias = load(c, "bias.f32", "<f4", (E,)) if c["bias"] else None
        tokens = load(c, "tokens.f32", "<f4", (T, H))
        w1 = load(c, "w1.f32", "<f4", (E, F, H))
        w3 = load(c, "w3.f32", "<f4", (E, F, H))
        w2 = load(c, "w2.f32", "<f4", (E, H, F))
        idx = load(c, "topk_idx.i32", "<i4", (T, k)).long()
        wt = load(c, "topk_weight.f32", "<f4", (T, k))
        counts = load(c, "counts.i32", "<i4", (E,)).long()
        offsets = load(c, "offsets.i32", "<i4", (E + 1,)).long()
        rows = load(c, "rows.i32", "<i4", (n_rows,)).long()
        permuted = load(c, "permuted.f32", "<f4", (n_rows, H))
        ffn_out = load(c, "ffn_out.f32", "<f4", (n_rows, H))
        out = load(c, "out.f32", "<f4", (T, H))

        # --- routing (Megatron topk_routing_with_score_function, pure torch) ----------
        if c["score"] == "softmax":
            if c["pre_softmax"]:
                scores = torch.softmax(logits, dim=-1, dtype=torch.float32)
                probs, top = torch.topk(scores, k=k, dim=1)
            else:
                scores, top = torch.topk(logits, k=k, dim=1)
                probs = torch.softmax(scores, dim=-1, dtype=torch.float32)
        else:
            scores = torch.sigmoid(logits.float())
            if bias is not None:
                _, top = torch.topk(scores + bias, k=k, dim=1)
                scores = torch.gather(scores, dim=1, index=top)
            else:
                scores, top = torch.topk(scores, k=k, dim=1)
            probs = scores / (scores.sum(dim=-1, keepdim=True) + 1e-20) if k > 1 else scores
        if c["scaling"]:
            probs = probs * c["scaling"]
        routing_probs = torch.zeros(T, E).scatter(1, top, probs)
        routing_map = torch.zeros(T, E, dtype=torch.int32).scatter(1, top, 1).bool()
        check("xcheck moe %s: top-k indices equal torch.topk (same order)" % name, torch.equal(idx, top),
              "first mismatch at token %s" % (torch.nonzero((idx != top).any(dim=1))[:1].tolist(),))
        err = (wt - probs).abs().max().item()
        check("xcheck moe %s: routing weights within 1e-6 of torch" % name, err <= 1e-6, "max err %g" % err)

        # --- capacity ("position" policy) and permutation ------------------------------
        kept_map = routing_map.clone()
        if c["capacity_factor"] > 0:
            cap = math.ceil(T * k / E * c["capacity_factor"])
            kept_map = routing_map & (torch.cumsum(routing_map.int(), dim=0) <= cap)
        num_out = int(kept_map.sum().item())
        dropped = int(routing_map.sum().item()) - num_out
        check("xcheck moe %s: kept %d / dropped %d rows as torch" % (name, num_out, dropped),
              num_out == n_rows and dropped == c["num_dropped"],
              "nam kept %d dropped %d" % (n_rows, c["num_dropped"]))
        tpe = kept_map.sum(dim=0).long()
        ok = torch.equal(counts, tpe) and torch.equal(offsets, torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(tpe, 0)]))
        check("xcheck moe %s: tokens per expert and offsets" % name, ok, "counts %s vs %s" % (counts.tolist()[:8], tpe.tolist()[:8]))
        flat = kept_map.T.contiguous().flatten()
        order = torch.argsort(flat.int(), descending=True, stable=True)[:num_out]
        sorted_indices = order % T
        sorted_experts = order // T
        if num_out != n_rows:
            continue
        ok = torch.equal(rows // k, sorted_indices) and torch.equal(idx[rows // k, rows % k], sorted_experts)
        check("xcheck moe %s: permutation order = Megatron's stable argsort of routing_map.T" % name, ok, "rows differ")
        ref_perm = tokens.index_select(0, sorted_indices)
        check("xcheck moe %s: permuted tokens bit-exact" % name, torch.equal(permuted, ref_perm), "max diff %g" % (permuted - ref_perm).abs().max().item())

        # --- expert FFN (float64) ------------------------------------------------------
        x64 = ref_perm.double()
        ffn_ref = torch.zeros(num_out, H, dtype=torch.float64)
        start = 0
        for e in range(E):
            n = int(tpe[e].item())
            if n == 0:
                continue
            xe = x64[start:start + n]
            g = xe @ w1[e].double().T
            if c["act"] == "swiglu":
                h = torch.nn.functional.silu(g) * (xe @ w3[e].double().T)
            else:
                h = torch.relu(g) ** 2
            ffn_ref[start:start + n] = h @ w2[e].double().T
            start += n
        scale = max(ffn_ref.abs().max().item(), 1e-30)
        err = (ffn_out.double() - ffn_ref).abs().max().item()
        check("xcheck moe %s: expert FFN (%s) within 1e-4 * scale of torch float64" % (name, c["act"]), err <= 1e-4 * scale,
              "max err %g, scale %g" % (err, scale))

        # --- combine (Megatron unpermute) -------------------------------------------------
        permuted_probs = routing_probs.T.contiguous().masked_select(kept_map.T.contiguous()).double()
        index = sorted_indices.unsqueeze(1).expand(-1, H)
        layer_ref = torch.zeros(T, H, dtype=torch.float64).scatter_add_(0, index, ffn_ref * permuted_probs.unsqueeze(1))
        scale = max(layer_ref.abs().max().item(), 1e-30)
        err = (out.double() - layer_ref).abs().max().item()
        check("xcheck moe %s: layer output within 1e-4 * scale of the all-torch layer" % name, err <= 1e-4 * scale,
              "max err %g, scale %g" % (err, scale))
        own = torch.zeros(T, H, dtype=torch.float64).scatter_add_(0, index, ffn_out.double() * permuted_probs.unsqueeze(1))
        err = (out.double() - own).abs().max().item()
        check("xcheck moe %s: combine within 1e-6 * scale of torch's unpermute of nam's expert outputs" % name,
              err <= 1e-6 * scale, "max err %g, scale %g" % (err, scale))

    print("xcheck_moe: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
