"""Build the ahead-of-time kernel module: `python -m flowdet.capture.aot` (or `make kernels`).

numba's pycc compiles the @compiled functions listed in SIGNATURES (with everything they
call) into flowdet/capture/_aot_kernels.*.so for this machine's CPU, and records the hash of
the kernel sources beside it; flowdet.capture.jit uses the module only while that hash
matches (why and how: see there). Each signature fixes the dtypes and the C-contiguous
layout that flowdet passes; a call with other arguments falls back to the JIT.

Building takes about half a minute and needs numba and a C compiler; running does not.
`--check` prints whether the current build is in use and exits 1 when it is not.
"""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from flowdet.capture.aotsig import SIGNATURES


def build(out_dir: Path | None = None, verbose: bool = False) -> Path:
    """Compile the kernels; return the path of the extension module written."""
    from flowdet.capture import jit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
        from numba.pycc import CC

    out_dir = out_dir or Path(jit.__file__).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    name = jit.AOT_MODULE.rsplit(".", 1)[1]
    digest = jit.source_hash()
    with tempfile.TemporaryDirectory() as tmp:
        cc = CC(name)
        cc.output_dir = tmp
        cc.target_cpu = "host"  # built where it runs; a copy to another CPU model must rebuild
        cc.verbose = verbose
        for modname, sigs in SIGNATURES.items():
            module = importlib.import_module(modname)
            for fname, sig in sigs.items():
                kernel = getattr(module, fname)
                if isinstance(kernel, jit.Kernel):
                    jit.jit_dispatcher(kernel)  # the module's kernels become dispatchers
                cc.export(fname, sig)(kernel.py_func)
        old = os.getcwd()
        os.chdir(tmp)  # pycc leaves temporary files in the working folder
        try:
            cc.compile()
        finally:
            os.chdir(old)
        built = [p for p in Path(tmp).glob(name + ".*") if p.suffix in (".so", ".pyd")]
        if len(built) != 1:
            raise RuntimeError(f"pycc built {built}, expected one extension module")
        # rename into place: a process using the previous build keeps its file; the hash
        # goes last, so a new process sees either the old hash (and takes the JIT when the
        # sources changed) or the new pair
        so = out_dir / built[0].name
        staged = out_dir / f".{built[0].name}.{os.getpid()}"
        shutil.copyfile(built[0], staged)
        os.chmod(staged, 0o755)
        os.replace(staged, so)
        hash_tmp = out_dir / f".{name}.sha256.{os.getpid()}"
        hash_tmp.write_text(digest + "\n")
        os.replace(hash_tmp, out_dir / (name + ".sha256"))
    return so


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flowdet.capture.aot", description=__doc__)
    ap.add_argument("--check", action="store_true", help="only report whether it is current")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    from flowdet.capture import jit

    if args.check:
        state = jit.kernels_in_use()
        print(f"kernels: {state}" + ("" if state == "aot" else " (run make kernels)"))
        return 0 if state == "aot" else 1
    so = build(verbose=args.verbose)
    print(f"built {so}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
