"""Copy cached Verilator runtime objects into a build folder (run by the build step).

Stdlib only: it runs as a command between ``verilator`` and ``make``, after Verilator has
written the makefile; the copies get a newer time stamp than that makefile, so make takes
them as up to date instead of compiling them again.
"""

import os
import shutil
import sys
import time

OBJS = ("verilated", "verilated_dpi", "verilated_threads", "verilated_vpi")


def main(runtime_dir: str, build_dir: str) -> None:
    stamp = time.time() + 1
    for stem in OBJS:
        for ext in (".o", ".d"):
            dst = os.path.join(build_dir, stem + ext)
            shutil.copyfile(os.path.join(runtime_dir, stem + ext), dst)
            os.utime(dst, (stamp, stamp))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
