"""tests/xcheck_common.py - what the dump-reading cross-checks (tests/xcheck_ssd.py,
tests/xcheck_m2rnn.py) share: the torch/numpy check, the command line, the protocol lines
and their counts, the manifest and the raw f32 files that `build/test_<kernel> --dump DIR`
writes, and the max-error comparison.

    run = xcheck_common.start("ssd")     # skip line and exit 0 without torch/numpy;
                                         # usage and exit 2 unless given DIR
    for name, kv in run.cases(): ...     # DIR/manifest.txt lines "case NAME key=value ..."
    x = run.load(f"{name}_x")            # DIR/NAME_x.f32 as float64, None when absent
    ok, why = close(got, want, 2e-5, "out")
    run.report(ok, "xcheck ...", why)    # "ok TEXT (WHY)" or "FAIL TEXT: WHY"
    run.done()                           # "xcheck_ssd: N passed, M failed"; exit 1 on failure

Protocol of tests/run.sh: one line per check, "ok ...", "FAIL ...: why" or "skip ...: reason"."""
import os
import sys


class Run:
    def __init__(self, kernel, directory):
        self.kernel = kernel
        self.dir = directory
        self.passed = 0
        self.failed = 0

    def report(self, ok, text, why=""):
        if ok:
            self.passed += 1
            print(f"ok {text}" + (f" ({why})" if why else ""))
        else:
            self.failed += 1
            print(f"FAIL {text}: {why}")

    def load(self, name):
        import numpy as np
        path = os.path.join(self.dir, f"{name}.f32")
        if not os.path.exists(path):
            return None
        return np.fromfile(path, dtype="<f4").astype(np.float64)

    def cases(self):
        man = os.path.join(self.dir, "manifest.txt")
        if not os.path.exists(man):
            print(f"FAIL xcheck {self.kernel}: {man} not found (run build/test_{self.kernel} --dump {self.dir} first)")
            sys.exit(1)
        for line in open(man):
            fld = line.split()
            if not fld or fld[0] != "case":
                continue
            yield fld[1], dict(x.split("=", 1) for x in fld[2:])

    def done(self):
        print(f"xcheck_{self.kernel}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def start(kernel):
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        print(f"skip xcheck {kernel}: torch/numpy not available ({exc})")
        sys.exit(0)
    if len(sys.argv) != 2:
        print(f"usage: xcheck_{kernel}.py DIR", file=sys.stderr)
        sys.exit(2)
    return Run(kernel, sys.argv[1])


def close(got, want, tol, what=None):
    """max |got - want| <= tol * max(1, max |want|): (ok, text)."""
    import numpy as np
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    why = f"max err {err:.3g} (scale {scale:.3g}, tol {tol:g} * scale)"
    return err <= tol * scale, f"{what}: {why}" if what else why
