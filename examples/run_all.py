"""Run every example and gather what they printed into one results file.

``python examples/run_all.py`` runs the full examples and writes
``examples/artifacts/results.json``; ``--quick`` runs the few-second smoke versions and
writes ``examples/artifacts/results-quick.json``. Only ``--gallery`` (``make plots``)
writes the committed files: the plots in ``examples/plots/`` and the numbers of
examples/README.md in ``examples/results.json``.
``--only 01,04`` picks examples by number. Each example runs in its own process;
one failure does not stop the others, but the exit status is 1.

The data sets and their licences are named in each example's docstring.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ARTIFACTS, EXAMPLES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke runs on small slices")
    parser.add_argument(
        "--gallery",
        action="store_true",
        help="full runs that refresh the committed plots and examples/results.json",
    )
    parser.add_argument("--only", default="", help="comma-separated numbers, e.g. 01,04")
    args = parser.parse_args(argv)
    scripts = sorted(EXAMPLES.glob("[0-9][0-9]_*.py"))
    if args.only:
        wanted = {s.strip().zfill(2) for s in args.only.split(",")}
        scripts = [s for s in scripts if s.name[:2] in wanted]
    if args.quick and args.gallery:
        parser.error("--gallery refreshes the committed results from full runs; drop --quick")
    target = (
        EXAMPLES / "results.json"
        if args.gallery
        else ARTIFACTS / ("results-quick.json" if args.quick else "results.json")
    )
    flags = ["--quick"] if args.quick else ["--gallery"] if args.gallery else []
    merged = json.loads(target.read_text()) if target.exists() else {}
    failed = []
    for script in scripts:
        name = script.stem
        cmd = [sys.executable, str(script), *flags]
        print(f"\n$ {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        code = subprocess.run(cmd, cwd=EXAMPLES.parent).returncode
        seconds = round(time.perf_counter() - t0, 1)
        out = ARTIFACTS / (name + ("-quick" if args.quick else ""))
        if code != 0:
            failed.append(name)
            merged[name] = {"status": f"failed (exit {code})", "wall_seconds": seconds}
            continue
        merged[name] = json.loads((out / "results.json").read_text())
        merged[name].update(status="ok", wall_seconds=seconds)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(merged, indent=1, sort_keys=True) + "\n")
    print(f"\nresults: {target}")
    for name, res in sorted(merged.items()):
        print(f"  {name:24s} {res['status']:18s} {res['wall_seconds']:7.1f} s")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
