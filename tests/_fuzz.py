"""A seeded mutation fuzzer for accelsim's bad-input contract (issue 16), shared by
``tests/test_fuzz.py`` (a short run in the suite) and ``benchmarks/fuzz.py`` (the long run).

Every packaged preset and example file (``hwconfigs/**``, ``workloads/**``, ``examples/**``,
``measured/**``, found by glob so new preset folders are fuzzed too) and every other input kind (allocation
files, NPZ signals, calibration arrays, traces, results tables, special paths, option values)
is mutated with a seeded generator, and each mutant is run through the reader or command that
takes it. The contract checked for every mutant:

- accepted: exit status 0, no NaN or infinity in the output, and a simulation of an accepted
  accelerator gives finite totals (or a one-line InfeasibleError);
- refused: exit status 2, at most ``MAX_LINES`` lines, each ``accelsim: error: ...`` naming
  the file, no traceback;
- nothing written besides the mutant itself.

A violation is recorded as ``(input kind, mutation, what broke)``; :func:`run` returns
the totals.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import random
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: Refused input prints at most this many lines (errors.MAX_PROBLEMS).
MAX_LINES = 20

# ----------------------------------------------------------------------------- text mutations

VALUES = ["-1", "0", "1", "1e308", "-1e308", "5e-324", ".nan", ".inf", "-.inf", "[1, 2]",
          "{a: 1}", "'text'", "true", "null", "", "~", "9" * 5000, "1000000", "2147483648",
          "5e-324 GB/s", "1e-300 MiB", "1e300 TB", "1 furlong", "nan MHz", "-3 GB/s",
          "0 B", "1e-30 pJ/B", "1000000 GHz", "3 ,, 1", "[[[[[[1]]]]]]", "*undefined",
          "!!python/object/apply:os.system ['true']", "&a [x, x]", "'$\\n'", '"\\x00"',
          "\"" + "x" * 300 + "\"", "[" * 200 + "]" * 200, "0x10", "1_000", "+.5",
          "'1.6 TB/s '", "1.6TB/s", "16 Gib/s", "2 W", "-0", "1e-9 Hz", "65537", "262145"]
UNITS = ["B", "KiB", "MiB", "GiB", "TB", "GB/s", "B/cycle", "MHz", "GHz", "Hz", "ns",
         "cycles", "pJ", "fJ", "pJ/B", "W", "mW", "furlong", "", "b/s", "kB/s"]
BOMB = ("a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n" for i in range(1, 9)))


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True) or [""]


def m_value(rng: random.Random, text: str) -> str:
    """Replace the value of one ``key: value`` line."""
    lines = _lines(text)
    idx = [i for i, ln in enumerate(lines) if re.match(r"^\s*[-\w.\"']+\s*:\s*\S", ln)]
    if not idx:
        return text + "x: " + rng.choice(VALUES) + "\n"
    i = rng.choice(idx)
    key = lines[i].split(":", 1)[0]
    lines[i] = f"{key}: {rng.choice(VALUES)}\n"
    return "".join(lines)


def m_number(rng: random.Random, text: str) -> str:
    """Scale, negate or replace one number in the text."""
    nums = list(re.finditer(r"(?<![\w.])\d+(\.\d+)?(e[+-]?\d+)?", text))
    if not nums:
        return m_value(rng, text)
    m = rng.choice(nums)
    v = m.group(0)
    rep = rng.choice([f"-{v}", f"{v}e{rng.randint(-330, 330)}", "0", f"{v}.5",
                      str(2**rng.randint(0, 70)), "nan", "1e-300"])
    return text[:m.start()] + rep + text[m.end():]


def m_unit(rng: random.Random, text: str) -> str:
    """Swap the unit of one quantity."""
    qs = list(re.finditer(r"(\d)\s+([A-Za-z]+(/[A-Za-z]+)?)", text))
    if not qs:
        return m_number(rng, text)
    m = rng.choice(qs)
    return text[:m.start(2)] + rng.choice(UNITS) + text[m.end(2):]


def m_line(rng: random.Random, text: str) -> str:
    """Delete, duplicate, swap or re-indent lines."""
    lines = _lines(text)
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    op = rng.randrange(4)
    if op == 0:
        del lines[i]
    elif op == 1:
        lines.insert(i, lines[i])
    elif op == 2:
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = " " * rng.randint(0, 7) + lines[i].lstrip()
    return "".join(lines)


def m_key(rng: random.Random, text: str) -> str:
    """Misspell a key."""
    keys = list(re.finditer(r"^(\s*-?\s*)([A-Za-z_]+)(\s*:)", text, re.M))
    if not keys:
        return m_line(rng, text)
    m = rng.choice(keys)
    k = m.group(2)
    pos = rng.randrange(len(k))
    k2 = k[:pos] + k[pos + 1:] if len(k) > 1 and rng.random() < 0.5 else k + "x"
    return text[:m.start(2)] + k2 + text[m.end(2):]


def m_bytes(rng: random.Random, text: str) -> str:
    """Truncate, or insert odd characters."""
    pos = rng.randrange(len(text) + 1)
    op = rng.randrange(3)
    if op == 0:
        return text[:pos]
    bad = rng.choice(["\x00", "\t", "\r", "\ufeff", "\u00b2", "{", "]", "&", "*", "!", "%",
                      "'", '"', "\x1b[31m", "\udcff"])
    return text[:pos] + bad + text[pos:]


def m_structure(rng: random.Random, text: str) -> str:
    """Structural bombs: deep nesting, alias bombs, complex keys, duplicate keys."""
    return rng.choice([
        text + "deep: " + "[" * 300 + "]" * 300 + "\n",
        text + BOMB,
        text + "? [a, b]\n: 1\n",
        text + text.splitlines()[0] + "\n" if text.strip() else text,
        "- " + text.replace("\n", "\n  "),
        text + "big: " + "7" * 4400 + "\n",
        text + "rec: &r [*r]\n",
    ])


MUTATIONS = {"value": m_value, "number": m_number, "unit": m_unit, "line": m_line,
             "key": m_key, "bytes": m_bytes, "structure": m_structure}


def mutate(rng: random.Random, text: str) -> tuple[str, str]:
    """One to three mutations; returns (text, names)."""
    names = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        name = rng.choice(list(MUTATIONS))
        try:
            text = MUTATIONS[name](rng, text)
        except (ValueError, IndexError, OverflowError):
            continue
        names.append(name)
    return text, "+".join(names) or "none"


def json_mutate(rng: random.Random, text: str) -> tuple[str, str]:
    """Mutations for JSON text (plus the YAML ones, which mostly break its syntax)."""
    ops = {
        "dup-key": lambda t: t.replace("{", '{"model": 1, "model": 2, ', 1),
        "huge-int": lambda t: t.replace("{", '{"x": ' + "9" * 5000 + ", ", 1),
        "deep": lambda t: t.replace("{", '{"x": ' + "[" * 3000 + "]" * 3000 + ", ", 1),
        "nan": lambda t: re.sub(r"\b\d+\b", "NaN", t, count=1),
        "inf": lambda t: re.sub(r"\b\d+\b", "1e999", t, count=1),
        "nest": lambda t: re.sub(r"\b(\d+)\b", r"[[\1]]", t, count=rng.randint(1, 2000)),
        "string": lambda t: re.sub(r"\b(\d+)\b", r'"\1"', t, count=rng.randint(1, 50)),
    }
    if rng.random() < 0.3:
        return mutate(rng, text)
    name = rng.choice(list(ops))
    return ops[name](text), name


# ----------------------------------------------------------------------------- running


@dataclass
class Totals:
    mutants: int = 0
    accepted: int = 0
    refused: int = 0
    violations: list = field(default_factory=list)
    by_kind: dict = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, kind: str, accepted: bool) -> None:
        self.mutants += 1
        self.accepted += accepted
        self.refused += not accepted
        a, r = self.by_kind.get(kind, (0, 0))
        self.by_kind[kind] = (a + accepted, r + (not accepted))


def _cli(args: list[str]) -> tuple[int, str, str]:
    from accelsim.cli import main
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main([str(a) for a in args])
        except BaseException as exc:  # noqa: BLE001 - any escape breaks the contract
            return 99, out.getvalue(), f"Traceback: escaped {type(exc).__name__}: {exc}"
    return rc, out.getvalue(), err.getvalue()


def _nonfinite(out: str) -> bool:
    """Whether output holds NaN or infinity: as JSON constants, or as table cells."""
    try:
        json.loads(out, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        return False
    except ValueError as exc:
        if str(exc) in ("NaN", "Infinity", "-Infinity"):
            return True
    return bool(re.search(r"(?m)\s(nan|inf|-inf)$", out))


def _check_cli(totals: Totals, kind: str, how: str, rc: int, out: str, err: str,
               names: str) -> bool:
    """Check one CLI outcome; True when accepted."""
    from accelsim.errors import one_line
    if rc == 0:
        if _nonfinite(out):
            totals.violations.append((kind, how, "accepted with a non-finite number"))
        totals.add(kind, True)
        return True
    lines = err.strip().splitlines()
    problem = None
    if rc != 2:
        problem = f"exit status {rc}: {err.strip()[:300]}"
    elif "Traceback" in err:
        problem = "traceback"
    elif not lines or len(lines) > MAX_LINES:
        problem = f"{len(lines)} error lines"
    elif not all(ln.startswith("accelsim: error: ") for ln in lines):
        problem = f"a line without the prefix: {lines[0][:200]}"
    elif names and not all(one_line(names) in ln for ln in lines):
        problem = f"a line not naming the file: {[ln for ln in lines if names not in ln][0][:200]}"
    if problem:
        totals.violations.append((kind, how, problem))
    totals.add(kind, False)
    return False


def _check_library(totals: Totals, kind: str, how: str, fn, name: str) -> object:
    """Run ``fn()``; a ConfigError/InfeasibleError must be short lines naming ``name``."""
    from accelsim.errors import ConfigError, InfeasibleError, one_line
    try:
        value = fn()
    except (ConfigError, InfeasibleError) as exc:
        lines = str(exc).splitlines()
        problems = getattr(exc, "problems", None) or [exc]
        if len(lines) > MAX_LINES or len(lines) != len(problems):
            totals.violations.append((kind, how, f"{len(lines)} lines"))
        elif name and not all(one_line(name) in ln for ln in lines):
            totals.violations.append((kind, how, f"not naming the file: {lines[0][:200]}"))
        totals.add(kind, False)
        return None
    except Exception as exc:  # noqa: BLE001
        totals.violations.append((kind, how, f"{type(exc).__name__}: {str(exc)[:200]}"))
        totals.add(kind, False)
        return None
    totals.add(kind, True)
    return value


def _new_files(d: Path, before: set[str]) -> list[str]:
    return sorted(set(os.listdir(d)) - before)


def preset_files() -> list[tuple[str, Path]]:
    """Every packaged preset and example: (command kind, path), by glob."""
    out = []
    for p in sorted((ROOT / "hwconfigs").rglob("*.yaml")):
        out.append(("system" if p.parent.name == "systems" else "hw", p))
    for p in sorted((ROOT / "workloads").rglob("*.yaml")):
        out.append(("workload", p))
    for p in sorted((ROOT / "examples").rglob("*.y*ml")):
        out.append(("sweep", p))
    for p in sorted((ROOT / "measured").rglob("*.yaml")):
        out.append(("measured", p))
    return out


_SHOW = {"hw": ["hw", "show"], "system": ["system", "show"], "workload": ["workload", "show"]}


def fuzz_presets(rng: random.Random, totals: Totals, per_file: int, work: Path) -> None:
    from accelsim.errors import ConfigError, InfeasibleError
    for kind, src in preset_files():
        text = src.read_text()
        for i in range(per_file):
            mut, names = mutate(rng, text)
            # examples name presets and files relative to themselves: keep the mutant beside
            # a copy of what it names by writing it into the source's own folder name
            path = work / f"m{i}-{src.name}"
            path.write_text(mut, errors="surrogateescape")
            before = set(os.listdir(work))
            how = f"{src.relative_to(ROOT)} {names}"
            if kind == "sweep":
                from accelsim.sweep import load_sweep
                spec = _check_library(totals, kind, how, lambda: load_sweep(path), str(path))
                if spec is not None and len(spec.points) > 2_000_000:
                    totals.violations.append((kind, how, "absurd point count"))
            elif kind == "measured":
                from accelsim.fidelity.measured import load_measured
                _check_library(totals, kind, how, lambda: load_measured(path), str(path))
            else:
                rc, out, err = _cli([*_SHOW[kind], path, "--format", "json"])
                ok = _check_cli(totals, kind, how, rc, out, err, str(path))
                if ok and kind == "hw":
                    _simulate_finite(totals, how, path, ConfigError, InfeasibleError)
            new = _new_files(work, before)
            if new:
                totals.violations.append((kind, how, f"wrote {new}"))
            path.unlink()


def _simulate_finite(totals, how, path, *errors) -> None:
    from accelsim.hw import load_hw
    from accelsim.sim import simulate_gemm
    try:
        r = simulate_gemm(load_hw(path), 16, 64, 64, w_bits=8)
    except errors:
        return
    except Exception as exc:  # noqa: BLE001
        totals.violations.append(("hw", how, f"simulate: {type(exc).__name__}: "
                                             f"{str(exc)[:200]}"))
        return
    for k in ("latency_s", "energy_j", "cycles", "tokens_per_s"):
        if not math.isfinite(getattr(r, k)):
            totals.violations.append(("hw", how, f"simulate: {k} = {getattr(r, k)}"))


def fuzz_allocations(rng: random.Random, totals: Totals, n: int, work: Path) -> None:
    from accelsim.precision import BitAllocation
    from accelsim.workload import load_workload
    model = load_workload("mixtral-8x7b")
    good = json.dumps(BitAllocation.uniform(model, 4).to_dict(model))
    for i in range(n):
        suffix = rng.choice([".json", ".yaml"])
        mut, names = json_mutate(rng, good)
        path = work / f"alloc{i}{suffix}"
        path.write_text(mut, errors="surrogateescape")
        _check_library(totals, "allocation", names,
                       lambda: BitAllocation.load(path, model=model), str(path))
        path.unlink()


ARRAY_MUTANTS = {
    "nan": lambda a, rng: np.where(rng.random() < 0.5, np.nan, a),
    "inf": lambda a, rng: a * np.inf,
    "huge": lambda a, rng: a * 1e308 + 1e308,
    "tiny": lambda a, rng: np.full_like(a, 5e-324, dtype=float),
    "negative": lambda a, rng: -a - 1,
    "complex": lambda a, rng: a * (1 + 1j),
    "text": lambda a, rng: np.full(a.shape, "x"),
    "bool": lambda a, rng: a > 0,
    "shape": lambda a, rng: a.reshape(-1),
    "extra-dim": lambda a, rng: a[..., None],
    "empty": lambda a, rng: a[:0],
    "float32-overflow": lambda a, rng: np.full_like(a, 1e39, dtype=float),
    "object": None,
}


def _mutate_arrays(rng: random.Random, arrays: dict) -> tuple[dict, str]:
    key = rng.choice(list(arrays))
    op = rng.choice(list(ARRAY_MUTANTS))
    out = dict(arrays)
    if op == "object":
        out[key] = np.array([object()] * 3, dtype=object)
    else:
        with np.errstate(all="ignore"):
            out[key] = np.asarray(ARRAY_MUTANTS[op](np.asarray(arrays[key]), np.random.default_rng(
                rng.randrange(2**32))))
    return out, f"{key}:{op}"


def _save_npz(path: Path, arrays: dict) -> bool:
    try:
        np.savez(path, **arrays)
        return True
    except (ValueError, TypeError):
        return False


def fuzz_arrays(rng: random.Random, totals: Totals, n: int, work: Path) -> None:
    from accelsim.alloc.signals import load_calibration, signals_from_npz, signals_from_trace
    from accelsim.workload import load_trace
    L, E, K = 2, 4, 2
    base_rng = np.random.default_rng(0)
    signals = {"router_norm": base_rng.random((L, E)), "frequency": np.full((L, E), 0.25),
               "sensitivity": base_rng.random((L, E, 2)), "sensitivity_bits": np.array([4, 2])}
    trace = {"expert_ids": base_rng.integers(0, E, (5, L, K)),
             "routing_weights": base_rng.random((5, L, K))}
    calib = {"tokens": base_rng.random((3, 8))}
    for i in range(n):
        which = i % 3
        base = (signals, trace, calib)[which]
        arrays, names = _mutate_arrays(rng, base)
        path = work / f"a{i}.npz"
        if not _save_npz(path, arrays):
            continue
        if which == 0:
            def fn(path=path):
                s = signals_from_npz(path)
                s.check(L, E, file=str(path))
                return s
            kind = "signals"
        elif which == 1:
            def fn(path=path):
                signals_from_trace(path, E, num_layers=L, top_k=K)
                return load_trace(path)
            kind = "trace"
        else:
            def fn(path=path):
                return load_calibration(path, 8)
            kind = "calibration"
        _check_library(totals, kind, names, fn, str(path))
        path.unlink()
    # CSV traces
    rows = "token,layer,expert\n" + "".join(f"{t},{l},{(t + l) % E}\n" for t in range(3)
                                            for l in range(L))
    for i in range(max(1, n // 3)):
        mut, names = mutate(rng, rows)
        if rng.random() < 0.3:
            mut += rng.choice(["1000000000000,0,0\n", "-1,0,0\n", "1e12,0,0\n", "0,0\n",
                               "0,0,0,0\n", "\u00b2,0,0\n"])
        path = work / f"t{i}.csv"
        path.write_text(mut, errors="surrogateescape")
        _check_library(totals, "trace-csv", names, lambda: load_trace(path), str(path))
        path.unlink()


def fuzz_paths(totals: Totals, work: Path) -> None:
    """Special files and names, as the input of every reading command."""
    fifo = work / "fifo.yaml"
    os.mkfifo(fifo)
    link = work / "loop.yaml"
    link.symlink_to(link)
    cases = [fifo, "/dev/zero", "/dev/null", work, work / ("x" * 300 + ".yaml"),
             work / "new\nline.yaml", link, work / "missing.yaml", "/proc/self/status",
             work / "nul\x00.yaml"]
    for p in cases:
        for cmd in (["hw", "show"], ["workload", "show"], ["plot"]):
            args = [*cmd, p] + (["--x", "a", "--y", "b", "--out", work / "f.png"]
                                if cmd == ["plot"] else [])
            before = set(os.listdir(work))
            rc, out, err = _cli(args)
            _check_cli(totals, "path", f"{' '.join(cmd)} {p!r}", rc, out, err, "")
            if rc == 0:
                totals.violations.append(("path", repr(p), "accepted"))
            if _new_files(work, before):
                totals.violations.append(("path", repr(p), "wrote a file"))
    fifo.unlink()
    link.unlink()
    for out in ["/proc/self/x.json", "/sys/x.json", work, work / "no/dir/x.json",
                work / ("y" * 300 + ".json")]:
        rc, o, err = _cli(["simulate", "--hw", "gemmini", "--gemm", "8,8,8", "--out", out])
        _check_cli(totals, "out", repr(out), rc, o, err, "")
        if rc == 0:
            totals.violations.append(("out", repr(out), "accepted"))


OPTION_VALUES = {
    "--gemm": ["1.5,2,3", "0,1,1", "-1,2,3", "1,2", "a,b,c", "1e9,1e9,1e9", "²,2,3", "",
               "8,8,8,8", "99999999999,1,1"],
    "--seed": ["-1", "1.5", "x", "99999999999999999999999"],
    "--levels": ["3,,1", "1,2,3", "", "17", "3,2,1,0", "a", "4,4"],
    "--routing": ["zipf:-1", "zipf:nan", "zipf:1e308", "freq:/dev/zero", "trace:", "bogus",
                  "zipf:", "trace:/nonexistent.npz"],
    "--alloc": ["x.json#²", "x.json#-1", "/dev/zero", "#1", "a" * 300],
    "--batch": ["0", "-1", "1e30", "x", "99999999999"],
}


def fuzz_options(rng: random.Random, totals: Totals, work: Path) -> None:
    base = {"--gemm": ["simulate", "--hw", "gemmini"],
            "--seed": ["simulate", "--hw", "gemmini", "--workload", "mixtral-8x7b",
                       "--routing", "zipf:1.2"],
            "--levels": ["allocate", "--workload", "mixtral-8x7b", "--method", "pmq",
                         "--avg-bits", "3"],
            "--routing": ["simulate", "--hw", "gemmini", "--workload", "mixtral-8x7b"],
            "--alloc": ["simulate", "--hw", "gemmini", "--workload", "mixtral-8x7b"],
            "--batch": ["simulate", "--hw", "gemmini", "--workload", "mixtral-8x7b"]}
    cwd = os.getcwd()
    os.chdir(work)
    try:
        for opt, values in OPTION_VALUES.items():
            for v in values:
                before = set(os.listdir(work))
                rc, out, err = _cli([*base[opt], opt, v])
                _check_cli(totals, "option", f"{opt} {v[:40]!r}", rc, out, err, "")
                if rc == 0 and opt in ("--levels", "--alloc"):
                    totals.violations.append(("option", f"{opt} {v!r}", "accepted"))
                if _new_files(work, before):
                    totals.violations.append(("option", f"{opt} {v!r}", "wrote a file"))
    finally:
        os.chdir(cwd)


def fuzz_tables(rng: random.Random, totals: Totals, n: int, work: Path) -> None:
    """Results tables for ``accelsim plot``: odd values, text, $ and inf."""
    import pandas as pd
    for i in range(n):
        df = pd.DataFrame({"x": [1.0, 2.0, 4.0], "y": [1.0, 2.0, 3.0], "h": ["a", "b", "a"]})
        col = rng.choice(["x", "y", "h"])
        df[col] = rng.choice([[np.inf, -np.inf, np.nan], ["$", "a$b", "$x$"], ["1", "x", ""],
                              [0.0, -1.0, 1e308], [True, False, True]])
        path = work / f"r{i}.csv"
        df.to_csv(path, index=False)
        args = ["plot", path, "--x", "x", "--y", rng.choice(["y", "h", "x"]),
                "--kind", rng.choice(["line", "scatter", "pareto", "bar"]),
                "--hue", rng.choice(["h", "y", "x"]), "--title", rng.choice(["$", "a", "$$"]),
                "--out", work / "f.png"]
        if rng.random() < 0.5:
            args.append("--logy")
        rc, out, err = _cli(args)
        _check_cli(totals, "table", " ".join(map(str, args[4:])), rc, out, err, "")
        for p in (path, work / "f.png"):
            if p.exists():
                p.unlink()


def run(seed: int = 0, *, per_file: int = 6, arrays: int = 30, allocations: int = 20,
        tables: int = 4, special: bool = True) -> Totals:
    """One fuzzing campaign; returns the totals (violations included)."""
    totals = Totals()
    t0 = time.perf_counter()
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="accelsim-fuzz-") as d:
        work = Path(d)
        fuzz_presets(rng, totals, per_file, work)
        fuzz_allocations(rng, totals, allocations, work)
        fuzz_arrays(rng, totals, arrays, work)
        if tables:
            fuzz_tables(rng, totals, tables, work)
        if special:
            fuzz_paths(totals, work)
            fuzz_options(rng, totals, work)
        leftovers = [p for p in os.listdir(work)]
        if leftovers:
            totals.violations.append(("run", "leftovers", str(leftovers[:5])))
    totals.seconds = time.perf_counter() - t0
    return totals
