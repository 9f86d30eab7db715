"""Run the benchmark suite as a script: the same options and output as `edgeseq bench`.

Example:
    python benchmarks/run.py --out BENCHMARKS.md --json bench.json
"""

from __future__ import annotations

from edgeseq.cli._bench import command

if __name__ == "__main__":
    command(prog_name="benchmarks/run.py")
