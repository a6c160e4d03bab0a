"""Side-by-side of accelsim's single-GEMM model with SCALE-Sim itself on the gemmini preset.

For every shape of :data:`POINTS` this script runs

* **SCALE-Sim** (PyPI ``scalesim``, pinned to :data:`SCALESIM_VERSION`, in its own venv that
  the script creates on first use; accelsim never imports it) in GEMM mode, weight-stationary,
  with a config derived from ``hwconfigs/gemmini.yaml`` (:func:`scalesim_config`), and parses
  its ``COMPUTE_REPORT.csv`` and ``DETAILED_ACCESS_REPORT.csv``;
* when SCALE-Sim reports stalls, SCALE-Sim again with one runtime patch (``--no-patched`` to
  skip): the rows of each weight fold are requested in load order instead of reversed, which
  removes an artefact of SCALE-Sim's read buffer (docs/fidelity.md, "SCALE-Sim's filter
  thrashing") and leaves its compute model unchanged; the installed package is not modified;
* **accelsim**'s ``simulate_gemm(hw, M, K, N, w_bits=8, a_bits=8,
  dataflow="weight_stationary", residency="offchip", group_size=None)`` (weights streamed
  from DRAM like SCALE-Sim's filter operand; per-output-channel scales only), plus the
  ``hot-first`` residency for reference, and ``accelsim simulate --gemm`` once through the CLI;

and writes ``docs/fidelity.csv`` and the tables between the ``fidelity-table`` markers of
``docs/fidelity.md``. Compute cycles, cycles with stalls, DRAM bytes, utilisation and the
time each tool takes per point are compared.

Two DRAM configurations: ``gemmini`` as the preset (16 B/cycle = 16 one-byte words/cycle) and
``gemmini-dram2`` (2 B/cycle), where weight streaming, not the array, limits decode shapes.

    python benchmarks/fidelity_scalesim.py                  # everything (~10 min on 2 cores)
    python benchmarks/fidelity_scalesim.py --quick          # two small shapes, no files written
    python benchmarks/fidelity_scalesim.py --accelsim-only  # refresh accelsim's columns only

``--accelsim-only`` keeps the recorded SCALE-Sim columns and recomputes accelsim's (seconds):
run it when ``tests/test_fidelity_table.py`` says the recorded accelsim numbers are stale.
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCALESIM_VERSION = "2.0.2"
DEFAULT_VENV = Path(tempfile.gettempdir()) / f"scalesim-{SCALESIM_VERSION}-venv"
CSV_PATH = ROOT / "docs" / "fidelity.csv"
MD_PATH = ROOT / "docs" / "fidelity.md"
MARK_START = "<!-- fidelity-table:start (written by benchmarks/fidelity_scalesim.py) -->"
MARK_END = "<!-- fidelity-table:end -->"

#: DRAM bandwidth of each configuration in bytes per cycle (None: the preset's own).
CONFIGS = {"gemmini": None, "gemmini-dram2": 2.0}


@dataclass(frozen=True)
class Point:
    config: str
    m: int
    k: int
    n: int
    note: str


POINTS = (
    Point("gemmini", 7, 33, 65, "ragged edges on every dimension"),
    Point("gemmini", 64, 256, 256, "reference: weights fill exactly half the filter SRAM"),
    Point("gemmini", 100, 300, 200, "ragged; operand order check (ifmap reads = M x K)"),
    Point("gemmini", 1, 1024, 512, "decode, weights 8x the filter SRAM half"),
    Point("gemmini", 16, 256, 896, "MoE expert w1/w3 (Mixtral 4096x14336 / 16), 16 tokens"),
    Point("gemmini", 16, 896, 256, "MoE expert w2 (Mixtral 14336x4096 / 16), 16 tokens"),
    Point("gemmini", 512, 256, 128, "prefill, activations 2x the ifmap SRAM half"),
    Point("gemmini", 1024, 128, 128, "long M: accumulator tiling in accelsim"),
    Point("gemmini-dram2", 1, 1024, 512, "decode at 2 B/cycle: weight streaming bound"),
    Point("gemmini-dram2", 16, 256, 896, "MoE w1 at 2 B/cycle"),
    Point("gemmini-dram2", 64, 256, 256, "partial-sum traffic at 2 B/cycle"),
)

QUICK = (Point("gemmini", 7, 33, 65, "quick"), Point("gemmini-dram2", 16, 64, 128, "quick"))


# ----------------------------------------------------------------------------- hardware
def accelsim_hw(config: str):
    """The gemmini preset, with the DRAM read bandwidth of ``config``."""
    from accelsim.config import read_mapping
    from accelsim.hw import hw_from_dict, load_hw
    bw = CONFIGS[config]
    if bw is None:
        return load_hw("gemmini")
    d = copy.deepcopy(dict(read_mapping(ROOT / "hwconfigs" / "gemmini.yaml")))
    d["name"] = config
    dram = next(lv for lv in d["memory"] if lv["scope"] == "offchip")
    dram["read_bandwidth"] = f"{bw:g} B/cycle"
    return hw_from_dict(d)


def scalesim_config(hw, run_name: str) -> str:
    """SCALE-Sim 2.x config text matching ``hw`` (one byte per word, as SCALE-Sim assumes).

    The scratchpad (weights and activations) is split evenly into SCALE-Sim's ifmap and filter
    SRAMs; the accumulator becomes the ofmap SRAM; the DRAM read bandwidth in bytes per cycle
    is SCALE-Sim's ``Bandwidth`` in words per cycle, which SCALE-Sim applies to each of its
    three DRAM ports (ifmap, filter, ofmap) separately.
    """
    ma = hw.cores.mac_array
    levels = {lv.name: lv for lv in hw.memory}
    spad_kib = hw.level_capacity(levels["scratchpad"]) / 1024
    acc_kib = hw.level_capacity(levels["accumulator"]) / 1024
    bw = hw.offchip.read_bandwidth_bytes_per_s / hw.clock_hz
    if bw != int(bw) or spad_kib % 2:
        raise ValueError("SCALE-Sim takes integer words/cycle and kB sizes")
    return (f"[general]\nrun_name = {run_name}\n\n"
            "[architecture_presets]\n"
            f"ArrayHeight: {ma.rows}\nArrayWidth: {ma.cols}\n"
            f"IfmapSramSzkB: {int(spad_kib // 2)}\nFilterSramSzkB: {int(spad_kib // 2)}\n"
            f"OfmapSramSzkB: {int(acc_kib)}\n"
            "IfmapOffset: 0\nFilterOffset: 10000000\nOfmapOffset: 20000000\n"
            f"Bandwidth : {int(bw)}\nDataflow : ws\n\n"
            "[run_presets]\nInterfaceBandwidth: USER\n")


# ----------------------------------------------------------------------------- SCALE-Sim
_RUNNER = r'''
import json, sys, time, types
import numpy
from scalesim.scale_sim import scalesim
cfg, topo, out, patched = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "1"
if patched:
    # Keep each weight fold's rows in load order (SCALE-Sim reverses them); see
    # docs/fidelity.md. Only systolic_compute_ws sees the change.
    import scalesim.compute.systolic_compute_ws as ws
    proxy = types.ModuleType("numpy_noflip")
    proxy.__dict__.update(numpy.__dict__)
    proxy.flip = lambda a, axis=None: a
    ws.np = proxy
t0, c0 = time.perf_counter(), time.process_time()
s = scalesim(save_disk_space=True, verbose=False, config=cfg, topology=topo,
             input_type_gemm=True)
s.run_scale(top_path=out)
wall, cpu = time.perf_counter() - t0, time.process_time() - c0
# one demand row per cycle of the stall-free schedule: SCALE-Sim's ideal-memory cycles
rows = s.runner.single_layer_sim_object_list[0].compute_system.ofmap_demand_matrix.shape[0]
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "demand_rows": int(rows)}))
'''


def ensure_venv(venv: Path) -> Path:
    """Python of a venv holding ``scalesim==SCALESIM_VERSION`` (created on first use)."""
    py = venv / "bin" / "python"
    check = [str(py), "-c", "import importlib.metadata as m; print(m.version('scalesim'))"]
    if py.exists():
        r = subprocess.run(check, capture_output=True, text=True, check=False)
        if r.returncode == 0 and r.stdout.strip() == SCALESIM_VERSION:
            return py
    else:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing scalesim=={SCALESIM_VERSION} into {venv} ...", file=sys.stderr)
    subprocess.run([str(py), "-m", "pip", "install", "-q", f"scalesim=={SCALESIM_VERSION}"],
                   check=True)
    subprocess.run(check, check=True, capture_output=True)
    return py


def _read_report(path: Path) -> dict:
    with open(path, newline="") as f:
        rows = [[c.strip() for c in r] for r in csv.reader(f)]
    head, vals = rows[0], rows[1]
    return {h: float(v) for h, v in zip(head, vals) if h}


def run_scalesim(py: Path, work: Path, p: Point, patched: bool) -> dict:
    """One SCALE-Sim run; its reports parsed into compute, stall and end-to-end cycles and
    DRAM words (= bytes: SCALE-Sim's word is one byte)."""
    tag = f"{p.config}_{p.m}x{p.k}x{p.n}_{'p' if patched else 'r'}"
    d = work / tag
    d.mkdir(parents=True, exist_ok=True)
    (d / "scale.cfg").write_text(scalesim_config(accelsim_hw(p.config), "run"))
    # SCALE-Sim's GEMM topology row is "name, M, N, K," (ifmap M x K, filter K x N)
    (d / "topo.csv").write_text(f"Layer, M, N, K,\ngemm, {p.m}, {p.n}, {p.k},\n")
    runner = work / "run_scalesim.py"
    t0 = time.perf_counter()
    r = subprocess.run([str(py), str(runner), str(d / "scale.cfg"), str(d / "topo.csv"),
                        str(d / "out"), "1" if patched else "0"],
                       capture_output=True, text=True, cwd=d, check=False)
    proc_s = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"SCALE-Sim failed on {tag}:\n{r.stderr[-2000:]}")
    times = json.loads(r.stdout.strip().splitlines()[-1])
    comp = _read_report(d / "out" / "run" / "COMPUTE_REPORT.csv")
    det = _read_report(d / "out" / "run" / "DETAILED_ACCESS_REPORT.csv")
    total, stall = comp["Total Cycles"], comp["Stall Cycles"]
    start = min(det["DRAM IFMAP Start Cycle"], det["DRAM Filter Start Cycle"])
    return {
        # SCALE-Sim's stall-free cycles: the rows of its demand matrices
        "compute_cycles": times["demand_rows"],
        # the same from the report; SCALE-Sim's stall count can be one off when it stalls
        "report_compute_cycles": total - stall + 1,
        # "Total Cycles" is the index of the last output cycle, counted from 0
        "cycles": total + 1,
        "stall_cycles": stall,
        # first DRAM prefetch (before cycle 0) to the last ofmap write to DRAM, as SCALE-Sim
        # 3 reports it ("Total Cycles (incl. prefetch)")
        "end_to_end_cycles": det["DRAM OFMAP Stop Cycle"] - start,
        "util": comp["Overall Util %"] / 100.0,
        "dram_ifmap_read_bytes": det["DRAM IFMAP Reads"],
        "dram_filter_read_bytes": det["DRAM Filter Reads"],
        "dram_read_bytes": det["DRAM IFMAP Reads"] + det["DRAM Filter Reads"],
        "dram_write_bytes": det["DRAM OFMAP Writes"],
        "sram_ofmap_writes": det["SRAM OFMAP Writes"],
        "time_s": times["wall_s"], "cpu_s": times["cpu_s"], "process_s": proc_s,
    }


def check_operand_order(p: Point, ss: dict) -> None:
    """SCALE-Sim's GEMM row is (M, N, K): when both operands fit the active half of their SRAM
    they are read from DRAM once, padded to whole folds (SCALE-Sim's prefetch matrices pad
    the ifmap to ``ceil(K/R) R`` columns and the filter to ``ceil(N/C) C`` columns and count
    the padding as reads), up to one request line of slack."""
    half, R, C = 128 * 1024 // 2, 16, 16
    if p.m * p.k <= half and p.k * p.n <= half:
        want_i = p.m * math.ceil(p.k / R) * R
        want_f = p.k * math.ceil(p.n / C) * C
        for got, want, what in ((ss["dram_ifmap_read_bytes"], want_i, "ifmap"),
                                (ss["dram_filter_read_bytes"], want_f, "filter")):
            if not want <= got < want + 16:
                raise AssertionError(f"{p}: SCALE-Sim {what} DRAM reads {got}, expected {want}"
                                     " - wrong M/N/K order in the topology row?")


def scalesim_point(py: Path, work: Path, p: Point, patched: bool) -> dict:
    ss = run_scalesim(py, work, p, patched=False)
    check_operand_order(p, ss)
    out = {"ss": ss, "ssp": None}
    if patched and ss["stall_cycles"] > 0:
        out["ssp"] = run_scalesim(py, work, p, patched=True)
    print(f"  SCALE-Sim {p.config} {p.m}x{p.k}x{p.n}: {ss['cycles']:.0f} cycles, "
          f"{ss['time_s']:.1f} s" + (f"; patched {out['ssp']['cycles']:.0f} cycles, "
                                     f"{out['ssp']['time_s']:.1f} s" if out["ssp"] else ""),
          file=sys.stderr, flush=True)
    return out


# ----------------------------------------------------------------------------- accelsim
def accelsim_point(p: Point, repeat: int = 30) -> dict:
    """accelsim on the same GEMM; the time is the median of ``repeat`` warm calls."""
    from accelsim.sim import simulate_gemm
    hw = accelsim_hw(p.config)
    kw = {"w_bits": 8, "a_bits": 8, "dataflow": "weight_stationary", "group_size": None}
    r = simulate_gemm(hw, p.m, p.k, p.n, residency="offchip", **kw)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        simulate_gemm(hw, p.m, p.k, p.n, residency="offchip", **kw)
        times.append(time.perf_counter() - t0)
    hot = simulate_gemm(hw, p.m, p.k, p.n, residency="hot-first", **kw)
    # offchip_bytes counts reads and writes; outputs go to DRAM only when the op's
    # activations live there (the simulator then warns), and are M x N bytes at 8 bits
    act_off = any("activations off chip" in w for w in r.warnings)
    writes = float(p.m * p.n) if act_off else 0.0
    tm, tk, tn = r.op_data["tiles"][0]
    return {"compute_cycles": r.compute_cycles, "cycles": r.cycles,
            "stall_cycles": r.stall_cycles, "dram_read_bytes": r.offchip_bytes - writes,
            "dram_write_bytes": writes, "util": r.mac_utilization,
            "weight_bytes": r.weight_bytes, "tile": f"{tm:g}x{tk:g}x{tn:g}",
            "activations_offchip": act_off, "time_us": statistics.median(times) * 1e6,
            "hotfirst_cycles": hot.cycles, "hotfirst_dram_bytes": hot.offchip_bytes}


def cli_record(p: Point) -> dict:
    """``accelsim simulate --gemm`` once through the real command (group size 128: the CLI's
    default), compared with the library call it should equal."""
    from accelsim.sim import simulate_gemm
    cmd = [sys.executable, "-m", "accelsim.cli", "simulate", "--hw", "gemmini", "--gemm",
           f"{p.m},{p.k},{p.n}", "--bits", "8", "--dataflow", "weight_stationary",
           "--residency", "offchip", "--format", "json"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=True)
    wall = time.perf_counter() - t0
    d = json.loads(r.stdout)
    lib = simulate_gemm("gemmini", p.m, p.k, p.n, w_bits=8, dataflow="weight_stationary",
                        residency="offchip")
    return {"command": " ".join(["accelsim"] + cmd[3:]), "cycles": d["cycles"],
            "compute_cycles": d["compute_cycles"], "offchip_bytes": d["offchip_bytes"],
            "library_cycles": lib.cycles, "process_s": wall}


# ----------------------------------------------------------------------------- output
COLUMNS = (
    "config", "dram_bytes_per_cycle", "m", "k", "n", "note", "scalesim_version",
    "ss_compute_cycles", "ss_report_compute_cycles", "ss_cycles", "ss_stall_cycles",
    "ss_end_to_end_cycles", "ss_util", "ss_dram_ifmap_read_bytes", "ss_dram_filter_read_bytes",
    "ss_dram_read_bytes", "ss_dram_write_bytes", "ss_time_s", "ss_cpu_s",
    "ssp_cycles", "ssp_stall_cycles", "ssp_end_to_end_cycles", "ssp_dram_ifmap_read_bytes",
    "ssp_dram_filter_read_bytes", "ssp_dram_read_bytes", "ssp_dram_write_bytes", "ssp_time_s",
    "ssp_cpu_s",
    "as_compute_cycles", "as_cycles", "as_stall_cycles", "as_dram_read_bytes",
    "as_dram_write_bytes", "as_util", "as_weight_bytes", "as_tile", "as_activations_offchip",
    "as_time_us", "as_hotfirst_cycles", "as_hotfirst_dram_bytes",
)


def make_row(p: Point, ss: dict | None, ssp: dict | None, acc: dict) -> dict:
    hw = accelsim_hw(p.config)
    row = {"config": p.config, "m": p.m, "k": p.k, "n": p.n, "note": p.note,
           "dram_bytes_per_cycle": hw.offchip.read_bandwidth_bytes_per_s / hw.clock_hz,
           "scalesim_version": SCALESIM_VERSION}
    for pre, src in (("ss_", ss), ("ssp_", ssp), ("as_", acc)):
        for c in COLUMNS:
            if c.startswith(pre):
                row[c] = "" if src is None else src[c[len(pre):]]
    return row


def _f(x, nd=0) -> str:
    if x == "" or x is None:
        return "-"
    x = float(x)
    return f"{x:,.{nd}f}"


def _ratio(a, b) -> str:
    if a in ("", None) or b in ("", None) or float(b) == 0:
        return "-"
    return f"{float(a) / float(b):.2f}"


CYCLES_HEAD = (
    "| # | config | M x K x N | compute SS | compute AS | AS/SS | cycles SS | e2e SS | "
    "e2e SS patched | cycles AS | AS / e2e SS |")
BYTES_HEAD = (
    "| # | DRAM read SS | DRAM read SS patched | DRAM read AS | DRAM write SS | DRAM write AS "
    "| util SS | util AS | AS tile | SS s wall (cpu) | SS patched s wall (cpu) | AS us |")


def markdown(rows: list[dict], cli: dict | None) -> str:
    """The two tables of docs/fidelity.md (legend in the document)."""
    out = [CYCLES_HEAD, "|---" * CYCLES_HEAD.count("|", 1) + "|"]
    for i, r in enumerate(rows, 1):
        ref = r["ssp_end_to_end_cycles"] or r["ss_end_to_end_cycles"]
        out.append(f"| {i} | {r['config']} | {r['m']} x {r['k']} x {r['n']} | "
                   f"{_f(r['ss_compute_cycles'])} | {_f(r['as_compute_cycles'])} | "
                   f"{_ratio(r['as_compute_cycles'], r['ss_compute_cycles'])} | "
                   f"{_f(r['ss_cycles'])} | {_f(r['ss_end_to_end_cycles'])} | "
                   f"{_f(r['ssp_end_to_end_cycles'])} | {_f(r['as_cycles'])} | "
                   f"{_ratio(r['as_cycles'], ref)} |")
    out += ["", BYTES_HEAD, "|---" * BYTES_HEAD.count("|", 1) + "|"]
    for i, r in enumerate(rows, 1):
        out.append(f"| {i} | {_f(r['ss_dram_read_bytes'])} | {_f(r['ssp_dram_read_bytes'])} | "
                   f"{_f(r['as_dram_read_bytes'])} | {_f(r['ss_dram_write_bytes'])} | "
                   f"{_f(r['as_dram_write_bytes'])} | {float(r['ss_util']):.3f} | "
                   f"{float(r['as_util']):.3f} | {r['as_tile']} | "
                   f"{_f(r['ss_time_s'], 1)} ({_f(r['ss_cpu_s'], 1)}) | "
                   f"{_f(r['ssp_time_s'], 1)} ({_f(r['ssp_cpu_s'], 1)}) | "
                   f"{_f(r['as_time_us'])} |")
    if cli:
        out += ["", (f"CLI record: `{cli['command']}` -> cycles {cli['cycles']:,.1f}, compute "
                     f"{cli['compute_cycles']:,.0f}, off-chip bytes {cli['offchip_bytes']:,.0f}"
                     f" (the library call gives {cli['library_cycles']:,.1f} cycles; "
                     f"{cli['process_s']:.1f} s for the whole process, start-up included).")]
    return "\n".join(out) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    os.replace(tmp, path)


def update_markdown(table: str, path: Path) -> None:
    text = path.read_text() if path.exists() else f"# Fidelity\n\n{MARK_START}\n{MARK_END}\n"
    a, b = text.find(MARK_START), text.find(MARK_END)
    if a < 0 or b < a:
        raise SystemExit(f"{path}: the {MARK_START!r} ... {MARK_END!r} markers are missing")
    new = text[:a + len(MARK_START)] + "\n\n" + table + "\n" + text[b:]
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(new)
    os.replace(tmp, path)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--venv", type=Path, default=DEFAULT_VENV,
                    help=f"venv for scalesim=={SCALESIM_VERSION} (created if missing)")
    ap.add_argument("--jobs", type=int, default=2, help="SCALE-Sim runs at once")
    ap.add_argument("--work", type=Path, default=None, help="keep SCALE-Sim's files here")
    ap.add_argument("--quick", action="store_true", help="two small shapes, print only")
    ap.add_argument("--no-patched", action="store_true", help="skip the patched reruns")
    ap.add_argument("--accelsim-only", action="store_true",
                    help="recompute accelsim's columns of the recorded CSV")
    args = ap.parse_args(argv)
    points = QUICK if args.quick else POINTS
    t_start = time.perf_counter()
    if args.accelsim_only:
        old = {(r["config"], int(r["m"]), int(r["k"]), int(r["n"])): r
               for r in read_csv(CSV_PATH)}
        rows = []
        for p in points:
            r = dict(old[(p.config, p.m, p.k, p.n)])
            r.update({k: v for k, v in make_row(p, None, None, accelsim_point(p)).items()
                      if k.startswith("as_")})
            rows.append(r)
        cli = cli_record(points[1])
    else:
        py = ensure_venv(args.venv)
        work = args.work or Path(tempfile.mkdtemp(prefix="fidelity-scalesim-"))
        work.mkdir(parents=True, exist_ok=True)
        (work / "run_scalesim.py").write_text(_RUNNER)
        print(f"SCALE-Sim {SCALESIM_VERSION} from {py}; files in {work}", file=sys.stderr)
        accelsim_point(points[0], repeat=1)          # numba compile/load outside the timings
        acc = {p: accelsim_point(p) for p in points}
        # longest first, so the two workers finish together
        order = sorted(points, key=lambda p: -math.ceil(p.k / 16) * math.ceil(p.n / 16)
                       * (46 + p.m))
        with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as ex:
            futs = {p: ex.submit(scalesim_point, py, work, p, not args.no_patched)
                    for p in order}
            res = {p: f.result() for p, f in futs.items()}
        rows = [make_row(p, res[p]["ss"], res[p]["ssp"], acc[p]) for p in points]
        cli = None if args.quick else cli_record(points[1])
    table = markdown(rows, cli)
    print(table)
    if not args.quick:
        write_csv(rows, CSV_PATH)
        update_markdown(table, MD_PATH)
        print(f"wrote {CSV_PATH.relative_to(ROOT)} and the table in "
              f"{MD_PATH.relative_to(ROOT)}", file=sys.stderr)
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
