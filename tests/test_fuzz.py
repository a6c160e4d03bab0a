"""The bad-input contract under seeded mutation (issue 16): every packaged preset and example
file (found by glob: new preset folders are fuzzed too) and every other input kind is
mutated, and each mutant is either accepted with finite results or refused with exit status
2 and a few ``accelsim: error:`` lines naming the file, no traceback, nothing written.

The engine is ``tests/_fuzz.py``; ``benchmarks/fuzz.py`` runs the long campaign (totals and
run time in docs/bad-input.md). This short run takes ~20-30 s on a loaded 2-core machine.
"""

from __future__ import annotations

import _fuzz


def test_every_input_kind_keeps_the_contract_under_mutation():
    totals = _fuzz.run(seed=16, per_file=8, arrays=30, allocations=16, tables=4)
    shown = "\n".join(f"{k}: {how}: {what}" for k, how, what in totals.violations[:15])
    assert not totals.violations, (f"{len(totals.violations)} of {totals.mutants} mutants "
                                   f"broke the contract:\n{shown}")
    kinds = {k for k, (a, r) in totals.by_kind.items() if a + r}
    assert {"hw", "workload", "sweep", "allocation", "signals", "trace", "calibration",
            "trace-csv", "path", "out", "option"} <= kinds
    assert _fuzz.preset_files() and totals.refused > 0 and totals.accepted > 0
