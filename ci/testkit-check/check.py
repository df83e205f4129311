#!/usr/bin/env python3
"""Holds anymongo's testkit to mongod's behaviour with a client that is not ours (PyMongo).

Usage: check.py PATH/TO/testkit-serve [NAME-SUBSTRING...]

Starts testkit-serve (every configuration: plain, auth, TLS, compression, fail points, replica
sets), runs every check of the checks_*.py files beside this one (or those whose name contains
one of the substrings given), prints one line per check and then `N passed, N failed`, and exits
non-zero if any check failed.
"""

import glob
import importlib
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import harness  # noqa: E402


def main(argv):
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    for path in sorted(glob.glob(os.path.join(HERE, "checks_*.py"))):
        importlib.import_module(os.path.splitext(os.path.basename(path))[0])
    wanted = argv[2:]
    checks = [c for c in harness.CHECKS if not wanted or any(w in c.__name__ for w in wanted)]
    env = harness.Env(argv[1])
    passed, failed = 0, []
    start = time.monotonic()
    try:
        for c in checks:
            t0 = time.monotonic()
            try:
                c(env)
            except Exception as e:  # a failed check, whatever it raised
                failed.append(c.__name__)
                detail = str(e) if isinstance(e, AssertionError) else traceback.format_exc(limit=3)
                print(f"FAIL {c.__name__}: {detail.strip()}", flush=True)
            else:
                passed += 1
                print(f"ok   {c.__name__} ({time.monotonic() - t0:.2f}s)", flush=True)
    finally:
        env.close()
    print(f"testkit-check: {len(checks)} checks in {time.monotonic() - start:.1f}s")
    if failed:
        print("failed: " + ", ".join(failed))
    print(f"{passed} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
