"""Kill ``hqgnn`` with SIGKILL many times inside every stage and count invariant violations (issue 17).

    PYTHONPATH=.:tests python bench/fault_injection.py [--kills 5] [--seed 17] [--out /tmp/faults]

Builds the reference work directories once (ingest -> prepare -> train -> export of a generated
~12 k-row log, :mod:`fault_harness`), then for each stage runs ``--kills`` cycles: a seeded random
fault inside the stage (half random moments within the stage's measured duration, half its named
moments: mid-epoch, a torn checkpoint, between export's pointer switches, ...), the invariants,
``doctor --repair``, the rerun, and the comparison with the uninterrupted run. Prints one row per
stage: kills, processes that finished before their fault, and violations (each listed below).
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fault_harness import STAGES, build_references, faults_for, kill_cycle  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5, help="cycles per stage")
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument("--out", type=Path, default=Path("/tmp/hqgnn-faults"))
    parser.add_argument("--stages", default=",".join(STAGES))
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    t0 = time.perf_counter()
    refs = build_references(args.out / "refs")
    print(f"references built in {time.perf_counter() - t0:.0f} s; stage durations after imports: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in refs.seconds.items()), flush=True)
    rng = random.Random(args.seed)
    table = []
    details = []
    for stage in args.stages.split(","):
        killed = finished = violations = 0
        for k in range(args.kills):
            fault = faults_for(stage, refs, rng)
            cycle = kill_cycle(refs, stage, fault, args.out / "cycle")
            killed += cycle.killed
            finished += not cycle.killed
            violations += len(cycle.violations)
            details += [f"{stage} #{k} {fault}: {v}" for v in cycle.violations]
            print(f"{stage} #{k}: {fault:<45} killed={cycle.killed} violations={len(cycle.violations)} ({cycle.seconds:.0f} s)", flush=True)
        table.append((stage, killed, finished, violations))
    print("\n| stage | kills | finished before the fault | invariant violations |\n|---|---|---|---|")
    for stage, killed, finished, violations in table:
        print(f"| {stage} | {killed} | {finished} | {violations} |")
    for line in details:
        print(line)
    print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
