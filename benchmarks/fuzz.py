"""The long fuzzing campaign of the bad-input contract (issue 16): many seeds of the
mutation fuzzer in ``tests/_fuzz.py`` (the suite's ``tests/test_fuzz.py`` runs one short
seed). Prints the totals per input kind, the run time and every violation; exits 1 if any.

    python benchmarks/fuzz.py                      # 10 seeds, 12 mutants per preset file
    python benchmarks/fuzz.py --seeds 50 --per-file 20

Results are recorded in docs/bad-input.md (## Fuzzing).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import _fuzz  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=1000)
    ap.add_argument("--per-file", type=int, default=12)
    ap.add_argument("--arrays", type=int, default=60)
    ap.add_argument("--allocations", type=int, default=40)
    ap.add_argument("--tables", type=int, default=6)
    args = ap.parse_args()
    t0 = time.perf_counter()
    kinds: dict[str, list[int]] = {}
    violations = []
    mutants = 0
    for s in range(args.first_seed, args.first_seed + args.seeds):
        t = _fuzz.run(s, per_file=args.per_file, arrays=args.arrays,
                      allocations=args.allocations, tables=args.tables,
                      special=(s == args.first_seed))
        mutants += t.mutants
        for k, (a, r) in t.by_kind.items():
            kinds.setdefault(k, [0, 0])
            kinds[k][0] += a
            kinds[k][1] += r
        violations += [(s, *v) for v in t.violations]
        print(f"seed {s}: {t.mutants} mutants, {t.accepted} accepted, {t.refused} refused, "
              f"{len(t.violations)} violations, {t.seconds:.1f} s", flush=True)
    took = time.perf_counter() - t0
    print(f"\n{'kind':<12} {'accepted':>9} {'refused':>9}")
    for k, (a, r) in sorted(kinds.items()):
        print(f"{k:<12} {a:>9} {r:>9}")
    print(f"\n{mutants} mutants in {took:.0f} s ({len(_fuzz.preset_files())} preset and "
          f"example files); {len(violations)} violations")
    for v in violations[:50]:
        print("  ", *v)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
