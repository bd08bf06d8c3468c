#!/usr/bin/env python3
"""tests/svg_test.py NAM_BIN - tests of `nam plan --svg`.

Every picture is checked against the plan it draws (`nam plan --json` of the same recipe):
well-formed XML and self-contained (no script, no external reference), one cell per layer
with the plan's family, Megatron symbol, seam and features, the stage groups exactly where
the plan's pipeline stages are (offset, layer count, pp rank, vp stage), each cell inside
its stage's box, the virtual-pipeline chunks, the MTP block, a legend entry per family, and
readable at 200+ layers (fixed cell size and font sizes; stages wrap instead of shrinking).
Then rsvg-convert (Debian librsvg2-bin) renders each picture to PNG, and the pixels inside
cells are read back and compared with the family colours.

Speaks the test protocol: "ok DESC", "FAIL DESC: WHY", "skip DESC: REASON".
"""
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
import zlib

NS = "{http://www.w3.org/2000/svg}"
NAM = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("NAM_BIN", "build/nam")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build", "svg-test")
failures = 0

# name, nam arguments (after `plan`)
CASES = [
    ("nam56r", []),
    ("nam56r-stack", [os.path.join(ROOT, "examples", "nam56r-stack.recipe")]),
    ("depth256-pp4-vpp4", ["--depth", "256", "--stages", "16", "--pp", "4", "--world", "32"]),
    ("depth240-one-stage", ["--depth", "240", "--stages", "1", "--pp", "1", "--world", "4", "--tp", "2", "--ep", "2"]),
    ("even-split-pp2", ["--stages", "1", "--pp", "2"]),
    ("declared-family", ["--set", "pattern.families=X", "--motif", "AEMX", "--depth", "16", "--stages", "4"]),
    ("escaped-name", ["--set", 'recipe.name=a<b>&"c\'d']),
]


def ok(desc):
    print("ok   " + desc, flush=True)


def fail(desc, why):
    global failures
    failures += 1
    print("FAIL %s: %s" % (desc, why), flush=True)


def skip(desc, why):
    print("skip %s: %s" % (desc, why), flush=True)


def run(args, check=True):
    p = subprocess.run([NAM] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if check and p.returncode != 0:
        raise RuntimeError("nam %s: exit %d: %s" % (" ".join(args), p.returncode, p.stderr.decode(errors="replace").strip()))
    return p


def cls(e):
    return (e.get("class") or "").split()


def rect_of(g):
    """The first <rect> child of a cell group: x, y, w, h, fill."""
    r = g.find(NS + "rect")
    return float(r.get("x")), float(r.get("y")), float(r.get("width")), float(r.get("height")), r.get("fill")


def check_selfcontained(root):
    bad = []
    for e in root.iter():
        tag = e.tag.replace(NS, "")
        if tag in ("script", "image", "foreignObject", "use", "a", "style", "iframe"):
            bad.append("<%s>" % tag)
        for k, v in e.attrib.items():
            if k.endswith("href") and not v.startswith("#"):
                bad.append("%s=%s" % (k, v))
            if k.startswith("on"):
                bad.append("event handler %s" % k)
            if "url(" in v and not all(part.startswith("#") for part in v.split("url(")[1:]):
                bad.append("%s=%s" % (k, v))
            if "@import" in v or "@font-face" in v:
                bad.append(k)
    return bad


def check_picture(name, svg_text, plan):
    """Structural checks of one picture against its plan; returns the parsed layer cells."""
    desc = "svg %s" % name
    try:
        root = ET.fromstring(svg_text)
    except ET.ParseError as e:
        fail(desc + ": well-formed XML", str(e))
        return None
    if root.tag != NS + "svg" or not root.get("width") or not root.get("viewBox"):
        fail(desc + ": root <svg> with width and viewBox", root.tag)
        return None
    ok(desc + ": well-formed XML, root <svg> %sx%s" % (root.get("width"), root.get("height")))

    bad = check_selfcontained(root)
    if bad:
        fail(desc + ": self-contained", ", ".join(sorted(set(bad))[:5]))
    else:
        ok(desc + ": self-contained (no script, no external reference, no font fetch)")

    depth = plan["depth"]
    title = root.find(NS + "title")
    if title is None or plan["recipe"] not in (title.text or "") or root.get("data-recipe") != plan["recipe"]:
        fail(desc + ": recipe name", "title %r, data-recipe %r, want %r" % (title.text if title is not None else None, root.get("data-recipe"), plan["recipe"]))
    else:
        ok(desc + ": recipe name %r in the title" % plan["recipe"])

    # counts in the header: one per family with layers
    counts = {e.get("data-family"): int(e.get("data-count")) for e in root.iter(NS + "text") if "count" in cls(e)}
    want = {k: v for k, v in plan["counts"].items() if v}
    if counts != want:
        fail(desc + ": header counts", "%r, plan %r" % (counts, want))
    else:
        ok(desc + ": header counts %s" % " ".join("%s=%d" % kv for kv in sorted(counts.items())))

    # one cell per layer, with the plan's family / native symbol / seam / features
    cells = [g for g in root.iter(NS + "g") if "layer" in cls(g)]
    idx = [int(g.get("data-layer")) for g in cells]
    if len(cells) != depth or sorted(idx) != list(range(depth)) or len({g.get("id") for g in cells}) != depth:
        fail(desc + ": one cell per layer", "%d cells for depth %d" % (len(cells), depth))
        return None
    ok(desc + ": one cell per layer (%d)" % depth)
    wrong = []
    for g in cells:
        L = plan["layers"][int(g.get("data-layer"))]
        got = (g.get("data-family"), g.get("data-native"), g.get("data-seam"), sorted((g.get("data-features") or "").split()))
        exp = (L["family"], L["native"] or "", L["seam"] or "", sorted(L.get("features", [])))
        if got != exp:
            wrong.append("layer %d: %r != %r" % (L["index"], got, exp))
    if wrong:
        fail(desc + ": cell family / native / seam / features", "; ".join(wrong[:4]))
    else:
        ok(desc + ": every cell has its layer's family, Megatron symbol, seam and features")

    # a family is one colour, and different families are different colours
    fills = {}
    for g in cells:
        fills.setdefault(g.get("data-family"), set()).add(rect_of(g)[4])
    if any(len(v) != 1 for v in fills.values()) or len({next(iter(v)) for v in fills.values()}) != len(fills):
        fail(desc + ": one colour per family", repr(fills))
    else:
        ok(desc + ": one colour per family (%s)" % ", ".join("%s %s" % (k, next(iter(v))) for k, v in sorted(fills.items())))

    # seam marks: unmapped -> hatched mark, custom implementation -> dashed mark, features -> dots
    seam_kind = {s["name"]: s["kind"] for s in plan["seams"]}
    wrong = []
    for g in cells:
        kind = seam_kind.get(g.get("data-seam"), "")
        if g.get("data-seam-kind") != kind:
            wrong.append("layer %s kind %r != %r" % (g.get("data-layer"), g.get("data-seam-kind"), kind))
        marks = {c for r in g.iter(NS + "rect") for c in cls(r)}
        if (kind == "unmapped") != ("mark-unmapped" in marks) or (kind == "custom_impl") != ("mark-custom" in marks):
            wrong.append("layer %s marks %r for kind %r" % (g.get("data-layer"), sorted(marks), kind))
        dots = sorted(c.get("data-feature") for c in g.iter(NS + "circle"))
        if dots != sorted((g.get("data-features") or "").split()):
            wrong.append("layer %s dots %r" % (g.get("data-layer"), dots))
    if wrong:
        fail(desc + ": seam and feature marks", "; ".join(wrong[:4]))
    else:
        marked = sum(1 for g in cells if g.get("data-seam") or g.get("data-features"))
        ok(desc + ": seam and feature marks on exactly the plan's %d layer(s)" % marked)

    # stage groups where the plan's pipeline stages are, each cell inside its stage's box
    stages = [g for g in root.iter(NS + "g") if "stage" in cls(g)]
    ps = plan["pipeline_stages"]
    wrong = []
    if len(stages) != len(ps):
        wrong.append("%d stage groups, plan has %d pipeline stages" % (len(stages), len(ps)))
    for i, (g, S) in enumerate(zip(stages, ps)):
        got = tuple(int(g.get(k)) for k in ("data-first-layer", "data-num-layers", "data-pp-rank", "data-vp-stage"))
        exp = (S["offset"], S["num_layers"], S["pp_rank"], S["vp_stage"])
        if got != exp:
            wrong.append("stage %d: (first, n, pp_rank, vp_stage) %r != %r" % (i, got, exp))
        inside = [int(c.get("data-layer")) for c in g.iter(NS + "g") if "layer" in cls(c)]
        if inside != list(range(S["offset"], S["offset"] + S["num_layers"])):
            wrong.append("stage %d holds layers %r" % (i, inside[:3] + ["..."]))
        box = next((r for r in g.iter(NS + "rect") if "stage-box" in cls(r)), None)
        if box is None:
            wrong.append("stage %d has no box" % i)
            continue
        bx, by, bw, bh = (float(box.get(k)) for k in ("x", "y", "width", "height"))
        for c in g.iter(NS + "g"):
            if "layer" not in cls(c):
                continue
            x, y, w, h, _ = rect_of(c)
            if not (bx <= x and x + w <= bx + bw and by <= y and y + h <= by + bh):
                wrong.append("layer %s cell outside stage %d's box" % (c.get("data-layer"), i))
                break
    if wrong:
        fail(desc + ": stage boundaries", "; ".join(wrong[:4]))
    else:
        ok(desc + ": %d stage groups at the plan's boundaries %s, each cell inside its stage box"
           % (len(ps), ",".join(str(S["offset"]) for S in ps)))

    # virtual-pipeline chunks
    chunks = [g for g in root.iter(NS + "g") if "vp-chunk" in cls(g)]
    vpp = plan.get("vpp") or 0
    if vpp:
        wrong = []
        if len(chunks) != vpp:
            wrong.append("%d chunk frames for vpp %d" % (len(chunks), vpp))
        for g in chunks:
            v = int(g.get("data-vp-stage"))
            held = [int(s.get("data-stage")) for s in g.iter(NS + "g") if "stage" in cls(s)]
            exp = [i for i, S in enumerate(ps) if S["vp_stage"] == v]
            if held != exp:
                wrong.append("chunk %d holds stages %r, plan %r" % (v, held, exp))
        if wrong:
            fail(desc + ": virtual-pipeline chunks", "; ".join(wrong))
        else:
            ok(desc + ": %d virtual-pipeline chunk frames, each around its stages" % vpp)
    elif chunks:
        fail(desc + ": virtual-pipeline chunks", "%d chunk frames without vpp" % len(chunks))
    else:
        ok(desc + ": no virtual-pipeline chunk frames (vpp none)")

    # MTP block: one cell per MTP position and depth
    mtp = plan.get("mtp")
    mcells = [g for g in root.iter(NS + "g") if "mtp-layer" in cls(g)]
    if mtp:
        exp = [(d, k, ch) for d in range(mtp["depths"]) for k, ch in enumerate(mtp["authored"])]
        got = [(int(g.get("data-mtp-depth")), int(g.get("data-position")), g.get("data-family")) for g in mcells]
        if got != exp:
            fail(desc + ": MTP block", "%r != %r" % (got[:4], exp[:4]))
        else:
            ok(desc + ": MTP block %s x %d, one cell per position" % (mtp["authored"], mtp["depths"]))
    elif mcells:
        fail(desc + ": MTP block", "MTP cells without an MTP block in the plan")

    # legend: one entry per family drawn
    drawn = {g.get("data-family") for g in cells} | {g.get("data-family") for g in mcells}
    legend = root.find(".//%sg[@id='legend']" % NS)
    fams = {g.get("data-family") for g in legend.iter(NS + "g") if g.get("data-family")} if legend is not None else set()
    if fams != drawn:
        fail(desc + ": legend", "legend families %r, drawn %r" % (sorted(fams), sorted(drawn)))
    else:
        ok(desc + ": legend has each drawn family (%s)" % "".join(sorted(fams)))

    # readable at any depth: fixed cell size, no text under 8px, stages wrap instead of shrinking
    sizes = {(rect_of(g)[2], rect_of(g)[3]) for g in cells}
    small = [t.get("font-size") for t in root.iter(NS + "text") if float(t.get("font-size", "12")) < 8]
    width = float(root.get("width"))
    if sizes != {(30.0, 34.0)} or small or width > 1600:
        fail(desc + ": readable", "cell sizes %r, fonts under 8px %r, width %g" % (sizes, small[:3], width))
    else:
        ok(desc + ": readable (30x34 cells, text >= 8px, width %g)" % width)
    return root


# ---- PNG: read back what rsvg-convert drew -------------------------------------------
def png_pixels(path):
    """Decode an 8-bit RGB/RGBA non-interlaced PNG: (width, height, rows of bytes, bpp)."""
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, w = 8, b"", None
    while pos < len(data):
        n, typ = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if typ == b"IHDR":
            w, h, bitdepth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if bitdepth != 8 or color not in (2, 6) or interlace:
                raise ValueError("unsupported PNG (depth %d, colour %d, interlace %d)" % (bitdepth, color, interlace))
            bpp = 4 if color == 6 else 3
        elif typ == b"IDAT":
            idat += body
        pos += 12 + n
    raw = zlib.decompress(idat)
    stride = w * bpp
    rows, prev, p = [], bytearray(stride), 0
    for _ in range(h):
        ft, line = raw[p], bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ft == 1:
                line[i] = (line[i] + a) & 255
            elif ft == 2:
                line[i] = (line[i] + b) & 255
            elif ft == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif ft == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, rows, bpp


def check_render(name, svg_path, root):
    desc = "svg %s: rendered to PNG by rsvg-convert" % name
    png = svg_path[:-4] + ".png"
    p = subprocess.run(["rsvg-convert", "-o", png, svg_path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0 or not os.path.exists(png):
        fail(desc, "exit %d: %s" % (p.returncode, p.stderr.decode(errors="replace").strip()[:300]))
        return
    try:
        w, h, rows, bpp = png_pixels(png)
    except Exception as e:  # noqa: BLE001 - any decode problem is a failure of this test
        fail(desc, "cannot read %s: %s" % (png, e))
        return
    if (w, h) != (int(float(root.get("width"))), int(float(root.get("height")))):
        fail(desc, "PNG is %dx%d, SVG says %sx%s" % (w, h, root.get("width"), root.get("height")))
        return
    # the pixel just inside each unmarked cell's top-left corner is its family colour
    wrong, seen = [], 0
    for g in root.iter(NS + "g"):
        if "layer" not in cls(g) and "mtp-layer" not in cls(g):
            continue
        if g.get("data-seam-kind") == "unmapped":
            continue
        x, y, _, _, fill = rect_of(g)
        px = rows[int(y) + 5][(int(x) + 5) * bpp:(int(x) + 5) * bpp + 3]
        want = bytes.fromhex(fill[1:])
        seen += 1
        if max(abs(a - b) for a, b in zip(px, want)) > 8:
            wrong.append("%s at (%d,%d) is #%s, want %s" % (g.get("id"), x + 5, y + 5, bytes(px).hex(), fill))
    if wrong:
        fail(desc, "; ".join(wrong[:4]))
    else:
        ok(desc + " (%dx%d, %d cells read back in their family colour)" % (w, h, seen))


def main():
    os.makedirs(OUT, exist_ok=True)
    rsvg = shutil.which("rsvg-convert")
    pictures = {}
    for name, args in CASES:
        try:
            plan = json.loads(run(["plan", "--json"] + args).stdout)
            svg = run(["plan", "--svg"] + args).stdout
        except (RuntimeError, ValueError) as e:
            fail("svg %s: nam plan" % name, str(e))
            continue
        path = os.path.join(OUT, name + ".svg")
        with open(path, "wb") as f:
            f.write(svg)
        root = check_picture(name, svg, plan)
        if root is None:
            continue
        pictures[name] = svg
        if rsvg:
            check_render(name, path, root)
    if not rsvg:
        skip("svg: render to PNG", "rsvg-convert not found (sudo apt-get install -y librsvg2-bin)")

    # -o FILE writes the same picture atomically; --svg refuses --json and other commands
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "plan.svg")
        p = run(["plan", "--svg", "-o", out], check=False)
        if p.returncode != 0 or not os.path.exists(out) or open(out, "rb").read() != pictures.get("nam56r"):
            fail("svg: -o FILE", "exit %d, file %s" % (p.returncode, "written" if os.path.exists(out) else "missing"))
        else:
            ok("svg: nam plan --svg -o FILE writes the same picture as stdout")
        open(out, "w").write("keep")
        p = run(["plan", "--svg", "--depth", "0", "-o", out], check=False)
        if p.returncode == 0 or open(out).read() != "keep":
            fail("svg: refused plan keeps -o FILE", "exit %d, contents %r" % (p.returncode, open(out).read()[:20]))
        else:
            ok("svg: a refused plan (exit %d) leaves an existing -o FILE as it was" % p.returncode)
    for args, why in ((["plan", "--svg", "--json"], "--svg with --json"), (["args", "--svg"], "--svg on args")):
        p = run(args, check=False)
        if p.returncode != 2 or p.stdout:
            fail("svg: usage error for " + why, "exit %d, %d bytes on stdout" % (p.returncode, len(p.stdout)))
        else:
            ok("svg: usage error (exit 2) for " + why)

    # the README picture is the CLI's picture of the built-in NAM56R (structure: every data-* attribute)
    committed = os.path.join(ROOT, "docs", "nam56r.svg")
    if "nam56r" in pictures:
        def structure(text):
            return [(e.tag, sorted((k, v) for k, v in e.attrib.items() if k.startswith("data-") or k == "id"))
                    for e in ET.fromstring(text).iter() if any(k.startswith("data-") for k in e.attrib)]
        if not os.path.exists(committed):
            fail("svg: docs/nam56r.svg", "missing (write it with: build/nam plan --svg -o docs/nam56r.svg)")
        elif structure(open(committed, "rb").read()) != structure(pictures["nam56r"]):
            fail("svg: docs/nam56r.svg", "differs from `build/nam plan --svg` (regenerate: build/nam plan --svg -o docs/nam56r.svg)")
        else:
            ok("svg: docs/nam56r.svg is the CLI's picture of the built-in NAM56R")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
