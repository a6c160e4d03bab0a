"""Issue 16: each class of bad input that got past the one-line-error promise, one test (or a
few) per class; each fails without its fix (the reproducers are the issue's)."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest

from _toys import TINY_HW, TOY_WL


def _one_error(rc, out, err, path, reason, *, max_lines=1):
    assert rc == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert 1 <= len(lines) <= max_lines, err
    assert all(line.startswith("accelsim: error: ") for line in lines), err
    assert any(str(path) in line and reason in line for line in lines), err
    return lines


# ----------------------------------------------------------------------------- 1: structure

def _bomb(levels: int = 9, fan: int = 9) -> str:
    """The issue's alias bomb: ~fan^levels nodes from a few hundred bytes."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * fan) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + "\n"


STRUCTURE = [
    ("complex-key", "hw.yaml", "? [a]\n: 1\n", "a key must be a plain value"),
    ("deep-yaml", "hw.yaml", "name: " + "[" * 500 + "]" * 500 + "\n", "nested deeper than 64"),
    ("deep-json", "config.json", '{"a": ' + "[" * 5000 + "]" * 5000 + "}",
     "nested deeper than 64"),
    ("alias-bomb", "hw.yaml", _bomb(), "aliases expand to more than 100,000 nodes"),
    ("recursive-alias", "hw.yaml", "a: &a [*a]\n", "an alias refers to the list or mapping"),
    ("huge-int-yaml", "hw.yaml", "name: " + "9" * 5000 + "\n", "more than 4,300 digits"),
    ("huge-int-json", "config.json", '{"a": ' + "9" * 5000 + "}", "more than 4,300 digits"),
    ("duplicate-json", "config.json", '{"a": 1, "a": 2}', "duplicate key 'a'"),
]


@pytest.mark.parametrize("case", STRUCTURE, ids=[c[0] for c in STRUCTURE])
def test_document_structure_limits(case, tmp_path, run_cli):
    _, name, content, reason = case
    path = tmp_path / name
    path.write_text(content)
    cmd = ("workload", "show") if name.endswith(".json") else ("hw", "show")
    _one_error(*run_cli(*cmd, path), path, reason)


def test_error_repr_is_bounded():
    """An error about a value with 10^10 shared nodes (or an int of 5,000 digits) is built
    without walking the value: a short line."""
    from accelsim.errors import ConfigError
    bomb: list = [0] * 10
    for _ in range(9):
        bomb = [bomb] * 10
    for value in (bomb, 10**5000, "x" * 10**7):
        text = str(ConfigError.single("bad", file="f.yaml", key="k", value=value))
        assert len(text) < 120 and "\n" not in text


def test_newline_in_a_name_stays_one_line(tmp_path, run_cli):
    path = tmp_path / "a\nb.yaml"
    rc, out, err = run_cli("hw", "show", path)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "a\\nb.yaml" in err


# ----------------------------------------------------------------------------- 2: types

@pytest.mark.parametrize("value", ["5", "'memory'"])
def test_unchecked_type_is_one_line(value, tmp_path, run_cli):
    path = tmp_path / "hw.yaml"
    path.write_text(TINY_HW + f"uncertain: {value}\n")
    _one_error(*run_cli("hw", "show", path), path, "uncertain: must be a list")
    system = tmp_path / "sys.yaml"
    system.write_text("name: s\ndevice: gemmini\ndevices_per_node: 2\nintra_node: "
                      f"{{bandwidth: 1 GB/s}}\nuncertain: {value}\n")
    rc, out, err = run_cli("system", "show", system)
    assert rc == 2 and "Traceback" not in err and "uncertain: must be a list" in err, err


def test_system_device_with_a_name_no_file_system_holds(tmp_path, run_cli):
    """Found by the long fuzz (seed 4016): the error named the device, not the file."""
    system = tmp_path / "sys.yaml"
    system.write_text(f"name: s\ndevice: {'x' * 300}\ndevices_per_node: 2\n"
                      "intra_node: {bandwidth: 1 GB/s}\n")
    rc, out, err = run_cli("system", "show", system)
    assert rc == 2 and all(str(system) in ln for ln in err.strip().splitlines()), err


def test_repeated_errors_are_grouped(tmp_path, run_cli):
    """expert_bits one level too deep: 2 rows x 4 experts = 8 identical problems are 3 lines
    and one '... and 5 more like it'."""
    path = tmp_path / "alloc.yaml"
    path.write_text(json.dumps({"model": "toy-moe", "expert_bits": [[[4, 4]] * 4] * 2}))
    wl = tmp_path / "wl.yaml"
    wl.write_text(TOY_WL)
    hw = tmp_path / "hw.yaml"
    hw.write_text(TINY_HW)
    rc, out, err = run_cli("simulate", "--hw", hw, "--workload", wl, "--alloc", path)
    lines = _one_error(rc, out, err, path, "... and 5 more like it", max_lines=4)
    assert len(lines) == 4 and "expert_bits[*][*]" in lines[-1]


def test_problem_count_is_capped():
    from accelsim.errors import MAX_PROBLEMS, ConfigError, Problem
    e = ConfigError([Problem(f"reason {i}", file="f", key=f"k{i}") for i in range(500)])
    assert len(e.problems) == MAX_PROBLEMS
    assert str(e.problems[-1]) == f"f: ... and {500 - MAX_PROBLEMS + 1} more problems"


# ----------------------------------------------------------------------------- 3: quantities

ABSURD = [
    ("tiny-bandwidth", ("4 GB/s", "5e-324 GB/s"), "memory[1].read_bandwidth",
     "absurdly small for bandwidth (at least 1 kB/s)"),
    ("tiny-capacity", ("1 GiB", "1e-300 MiB"), "memory[1].capacity",
     "absurdly small for size (at least 1 B)"),
    ("tiny-clock", ("500 MHz", "1e-9 Hz"), "clock", "absurdly small"),
    ("tiny-energy", ("160 pJ/B", "1e-30 pJ/B"), "memory[1].read_energy", "absurdly small"),
    ("million-cores", ("count: 1", "count: 1000000"), "cores.count", "must be <= 262144"),
    ("noc-dims", ("count: 1", "count: 4"), "",
     "noc.dims [3] give 3 cores, but cores.count is 4"),
]


@pytest.mark.parametrize("case", ABSURD, ids=[c[0] for c in ABSURD])
def test_absurd_quantities(case, tmp_path, run_cli):
    _, (old, new), key, reason = case
    path = tmp_path / "hw.yaml"
    assert old in TINY_HW
    extra = "noc: {link_bandwidth: 1 GB/s, dims: [3]}\n" if case[0] == "noc-dims" else ""
    path.write_text(TINY_HW.replace(old, new, 1) + extra)
    lines = _one_error(*run_cli("hw", "show", path), path, reason)
    assert key in lines[0]


def test_zero_stays_allowed_where_it_was(tmp_path, run_cli):
    path = tmp_path / "hw.yaml"
    path.write_text(TINY_HW.replace("read_energy: 1 pJ/B", "read_energy: 0 pJ/B"))
    rc, out, err = run_cli("hw", "show", path)
    assert rc == 0, err


def test_no_result_is_ever_inf_or_nan():
    """The final check where a SimResult is built: a non-finite total is a one-line
    ConfigError, whatever produced it."""
    import dataclasses

    from accelsim.errors import ConfigError
    from accelsim.sim import simulate_gemm
    r = simulate_gemm("gemmini", 64, 256, 256)
    for key, bad in (("latency_s", float("inf")), ("energy_j", float("nan")),
                     ("cycles", float("inf"))):
        with pytest.raises(ConfigError, match=f"{key}: simulating .* non-finite {key}"):
            dataclasses.replace(r, **{key: bad})


def test_smallest_allowed_quantities_give_finite_results(tmp_path, run_cli):
    """At the lower bounds (1 kHz clock, 1 kB/s, 1 zJ/B) a simulation is slow and frugal but
    finite; the issue's 5e-324 GB/s gave inf."""
    hw = (TINY_HW.replace("500 MHz", "1 kHz").replace("4 GB/s", "1 kB/s")
          .replace("160 pJ/B", "1e-6 fJ/B").replace("32 B/cycle", "1 B/cycle"))
    path = tmp_path / "hw.yaml"
    path.write_text(hw)
    rc, out, err = run_cli("simulate", "--hw", path, "--gemm", "64,256,256", "--format",
                           "json")
    assert rc == 0, err
    res = json.loads(out)
    assert all(np.isfinite(res[k]) for k in ("latency_s", "energy_j", "cycles"))
    # 256 x 256 weights of 8 bits through 1 kB/s take at least 65.5 s (the formula)
    assert res["latency_s"] >= 256 * 256 / 1e3


# ----------------------------------------------------------------------------- 4: paths

def test_fifo_device_and_long_names_are_refused_unread(tmp_path, run_cli):
    fifo = tmp_path / "hw.yaml"
    os.mkfifo(fifo)                      # reading it would block forever
    _one_error(*run_cli("hw", "show", fifo), fifo, "is a FIFO, not a regular file")
    _one_error(*run_cli("hw", "show", "/dev/zero"), "/dev/zero", "is a character device")
    long = tmp_path / ("a" * 300 + ".yaml")
    _one_error(*run_cli("hw", "show", long), "aaaa", "longer than 255 bytes")
    big = tmp_path / "big.yaml"
    with open(big, "wb") as fh:          # sparse: 17 MiB of nothing on disk
        fh.truncate(17 * 2**20)
    _one_error(*run_cli("hw", "show", big), big, "over the 16 MiB limit")


def test_out_refuses_pseudo_file_systems_and_directories(tmp_path, run_cli):
    for out, reason in (("/proc/self/accelsim-out.json", "kernel pseudo file system"),
                        ("/sys/accelsim-out.json", "kernel pseudo file system"),
                        (str(tmp_path), "is a directory"),
                        (str(tmp_path / "no" / "x.json"), "directory does not exist")):
        rc, out_, err = run_cli("simulate", "--hw", "gemmini", "--gemm", "8,8,8", "--out", out)
        _one_error(rc, out_, err, "", reason)


def test_out_writes_through_links_and_devices_without_replacing_them(tmp_path, run_cli):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    rc, out, err = run_cli("simulate", "--hw", "gemmini", "--gemm", "8,8,8", "--format",
                           "json", "--out", link)
    assert rc == 0, err
    assert link.is_symlink() and json.loads(target.read_text())["hw"] == "gemmini"
    # a character device of our own (the null device's numbers), never the system's
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except (PermissionError, OSError):
        pytest.skip("cannot make a device node here")
    rc, out, err = run_cli("simulate", "--hw", "gemmini", "--gemm", "8,8,8", "--out", node)
    assert rc == 0, err
    assert stat.S_ISCHR(os.lstat(node).st_mode)        # still the device, not a file
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_out_dash_is_stdout(run_cli):
    rc, out, err = run_cli("simulate", "--hw", "gemmini", "--gemm", "8,8,8", "--format",
                           "json", "--out", "-")
    assert rc == 0 and json.loads(out)["hw"] == "gemmini", err


# ----------------------------------------------------------------------------- 5: arrays

def _signals_error(path) -> str:
    from accelsim.alloc.signals import signals_from_npz
    from accelsim.errors import ConfigError
    with pytest.raises(ConfigError) as e:
        signals_from_npz(path)
    text = str(e.value)
    assert str(path) in text and "\n" not in text
    return text


ARRAYS = [
    ("nan-bits", dict(sensitivity=np.ones((2, 4, 1)), sensitivity_bits=np.array([np.nan]),
                      router_norm=np.ones((2, 4))), "sensitivity_bits: must be finite"),
    ("flat-bits", dict(sensitivity=np.ones((2, 4, 1)), sensitivity_bits=np.ones((1, 1)),
                       router_norm=np.ones((2, 4))), "sensitivity_bits: must have (0, 1)"),
    ("huge", dict(router_norm=np.full((2, 4), 1e308)), "router_norm: must be <= 1e+30"),
    ("denormal", dict(router_norm=np.full((2, 4), 5e-324)),
     "router_norm: non-zero values must be at least 1e-30"),
    ("complex", dict(router_norm=np.ones((2, 4)) * 1j), "router_norm: must be real numbers"),
    ("text", dict(frequency=np.array([["a"] * 4] * 2)), "frequency: must be numbers"),
    ("wrong-ndim", dict(router_norm=np.ones(4)), "router_norm: must have 2 dimension(s)"),
]


@pytest.mark.parametrize("case", ARRAYS, ids=[c[0] for c in ARRAYS])
def test_bad_signal_arrays(case, tmp_path):
    _, arrays, reason = case
    path = tmp_path / "s.npz"
    np.savez(path, **arrays)
    assert reason in _signals_error(path)


def test_zip_bomb_is_refused_before_it_is_inflated(tmp_path):
    from accelsim._io import load_arrays
    from accelsim.errors import ConfigError
    path = tmp_path / "bomb.npz"
    np.savez_compressed(path, router_norm=np.zeros((1024, 1024)))    # 8 MiB -> ~8 KiB
    assert path.stat().st_size < 2**16
    with pytest.raises(ConfigError, match="would decompress to 8 MiB, over the 1 MiB limit"):
        load_arrays(path, limit=2**20)


def test_trace_and_routing_arrays(tmp_path):
    from accelsim.alloc.signals import signals_from_trace
    from accelsim.errors import ConfigError
    from accelsim.workload import Explicit, load_trace, parse_routing
    ids = np.zeros((3, 2, 2), np.int64)
    ids[:, :, 1] = 1
    np.savez(tmp_path / "t.npz", expert_ids=ids, routing_weights=np.array([["x"] * 2] * 6)
             .reshape(3, 2, 2))
    with pytest.raises(ConfigError, match="routing_weights: must be numbers"):
        signals_from_trace(tmp_path / "t.npz", 4)
    (tmp_path / "t.csv").write_text("token,layer,expert\n1000000000000,0,0\n")
    with pytest.raises(ConfigError, match=r"t.csv: row 2: token must be in 0\.\.67,108,863"):
        load_trace(tmp_path / "t.csv")
    np.savez(tmp_path / "f.npz", frequencies=np.array([1e308, 1e308]))
    with pytest.raises(ConfigError, match="f.npz: frequencies: must be <= 1e\\+30"):
        parse_routing(f"freq:{tmp_path / 'f.npz'}")
    with pytest.raises(ConfigError, match="sum to a finite number"):   # sums overflow
        Explicit(np.array([1.7e308, 1.7e308])).probabilities(1, 2, 0)


def test_calibration_that_overflows_float32(tmp_path):
    from accelsim.alloc.signals import load_calibration
    from accelsim.errors import ConfigError
    np.save(tmp_path / "c.npy", np.full((4, 8), 1e39))
    with pytest.raises(ConfigError, match="c.npy: has values that overflow to infinity as "
                                          "float32"):
        load_calibration(tmp_path / "c.npy", 8)
    np.save(tmp_path / "z.npy", np.ones((4, 8)) * (1 + 1j))
    with pytest.raises(ConfigError, match="must be real numbers, not complex"):
        load_calibration(tmp_path / "z.npy", 8)


# ----------------------------------------------------------------------------- 6: options

OPTIONS = [
    ("seed", ("simulate", "--hw", "gemmini", "--workload", "mixtral-8x7b", "--routing",
              "zipf:1.2", "--seed", "-1"), "seed: must be an integer in 0..2^63-1"),
    ("gemm-float", ("simulate", "--hw", "gemmini", "--gemm", "1.5,2,3"), "--gemm: must be"),
    ("levels-empty", ("allocate", "--workload", "mixtral-8x7b", "--method", "pmq",
                      "--avg-bits", "3",
                      "--levels", "3,,1"), "--levels: must be comma-separated integers"),
    ("levels-up", ("allocate", "--workload", "mixtral-8x7b", "--method", "pmq",
                   "--avg-bits", "3",
                   "--levels", "1,2,3"), "--levels: bit levels go from high to low"),
    ("superscript", ("simulate", "--hw", "gemmini", "--workload", "mixtral-8x7b", "--alloc",
                     "FRONT#²"), "no such allocation file"),
]


@pytest.mark.parametrize("case", OPTIONS, ids=[c[0] for c in OPTIONS])
def test_bad_options(case, tmp_path, run_cli, monkeypatch):
    _, args, reason = case
    monkeypatch.chdir(tmp_path)
    (tmp_path / "FRONT").write_text("{}")   # an existing base makes '#²' look like a point
    _one_error(*run_cli(*args), "", reason)


def test_plot_options(tmp_path, run_cli):
    import pandas as pd
    table = tmp_path / "r.csv"
    pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, np.inf, 2.0], "t": ["a", "b", "c"],
                  "h": ["$a", "b$", "$"]}).to_csv(table, index=False)
    out = tmp_path / "f.png"
    rc, _, err = run_cli("plot", table, "--x", "x", "--y", "y", "--logy", "--hue", "h",
                         "--title", "cost in $", "--out", out)
    assert rc == 0 and out.stat().st_size > 0, err
    for args, reason in ((("--y", "t", "--kind", "bar"), "column 't' is not numeric"),
                         (("--y", "y", "--hue", "y"), "--hue: must differ from --y"),
                         (("--y", "x"), "--y: must differ from --x"),
                         (("--y", "y", "--kind", "pareto", "--x", "h"), "column 'h' is not")):
        _one_error(*run_cli("plot", table, "--x", "x", *args, "--out", tmp_path / "g.png"),
                   "", reason)
    assert not (tmp_path / "g.png").exists()


# ----------------------------------------------------------------------------- 7: sweeps, signals

SWEEP = """\
fixed: {workload: wl.yaml, hw: hw.yaml, context: 64}
axes:
  - grid: {avg_bits: [2, 3, 4, 5], batch: [1, 2]}
"""


@pytest.fixture
def sweep_dir(tmp_path):
    (tmp_path / "hw.yaml").write_text(TINY_HW)
    (tmp_path / "wl.yaml").write_text(TOY_WL)
    (tmp_path / "s.yaml").write_text(SWEEP)
    return tmp_path


@pytest.mark.parametrize("value", ["-.inf", ".inf", ".nan"])
def test_sweep_integer_parameter_that_is_not_finite(sweep_dir, value):
    """Found by the long fuzz (seed 2010): ``batch: -.inf`` raised OverflowError."""
    from accelsim.errors import ConfigError
    from accelsim.sweep import load_sweep
    (sweep_dir / "s.yaml").write_text(SWEEP.replace("context: 64", f"context: 64, batch: "
                                                                   f"{value}"))
    with pytest.raises(ConfigError, match=r"s.yaml: fixed.batch: must be in 1\.\."):
        load_sweep(sweep_dir / "s.yaml")


def test_second_writer_gets_one_line_naming_the_first(sweep_dir, run_cli):
    from accelsim.sweep.store import OutputLock
    out = sweep_dir / "r.csv"
    with OutputLock(out):
        rc, _, err = run_cli("sweep", sweep_dir / "s.yaml", "--out", out, "--resume")
        _one_error(rc, "", err, out, f"is being written by another accelsim run (pid "
                                     f"{os.getpid()}")
    assert not out.exists() and not (sweep_dir / "r.csv.parts").exists()
    rc, _, err = run_cli("sweep", sweep_dir / "s.yaml", "--out", out)
    assert rc == 0 and not (sweep_dir / "r.csv.lock").exists(), err


def test_executor_that_fails_to_start_leaves_nothing(sweep_dir, run_cli):
    out = sweep_dir / "r.csv"
    _one_error(*run_cli("sweep", sweep_dir / "s.yaml", "--out", out, "--dask", "garbage://x"),
               "", "--dask: cannot reach the Dask scheduler")
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["hw.yaml", "s.yaml", "wl.yaml"]
    rc, _, err = run_cli("sweep", sweep_dir / "s.yaml", "--out", out)
    assert rc == 0, err


def test_sigterm_is_handled_like_sigint_and_resumable(sweep_dir, run_cli, monkeypatch):
    import accelsim.sweep.run as run_mod
    calls = []
    real = run_mod.run_chunk

    def chunk_then_sigterm(evaluate, points):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)   # arrives between two chunks
        return real(evaluate, points)

    monkeypatch.setattr(run_mod, "run_chunk", chunk_then_sigterm)
    out = sweep_dir / "r.csv"
    rc, _, err = run_cli("sweep", sweep_dir / "s.yaml", "--out", out, "--chunk", "2")
    assert rc == 143, err
    assert err.strip() == (f"accelsim: error: terminated (SIGTERM); finished chunks are kept "
                           f"in {out}.parts; run the same command with --resume to continue")
    assert signal.getsignal(signal.SIGTERM) is not None and not out.exists()
    monkeypatch.setattr(run_mod, "run_chunk", real)
    rc, stdout, err = run_cli("sweep", sweep_dir / "s.yaml", "--out", out, "--resume")
    assert rc == 0 and "from the interrupted run" in stdout, err


def test_workers_die_with_a_killed_sweep(tmp_path):
    """SIGKILL of the process that owns the pool: its worker exits within seconds (the
    watchdog polls every second; the kernel's parent-death signal covers the fork server)."""
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, time\n"
        "from accelsim.sweep.executors import ProcessExecutor\n"
        "if __name__ == '__main__':\n"
        "    ex = ProcessExecutor(1)\n"
        "    print(ex._pool.submit(os.getpid).result(), flush=True)\n"
        "    time.sleep(60)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True,
                            env=env)
    worker = int(proc.stdout.readline())
    os.kill(worker, 0)                         # alive
    proc.kill()
    proc.wait()
    for _ in range(100):
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(worker, signal.SIGKILL)
        pytest.fail("the worker outlived the killed sweep by 10 s")


def test_sweep_to_stdout(sweep_dir, run_cli):
    import pandas as pd
    rc, out, err = run_cli("sweep", sweep_dir / "s.yaml", "--out", "-")
    assert rc == 0 and "wrote 8 points to stdout" in err, err
    table = pd.read_csv(io.StringIO(out))
    assert table["point_id"].tolist() == list(range(8))
    assert sorted(p.name for p in sweep_dir.iterdir()) == ["hw.yaml", "s.yaml", "wl.yaml"]


def test_oserror_escaping_a_command_is_one_line(tmp_path, run_cli, monkeypatch):
    """The CLI's safety net: an OSError no reader checked first still names its file."""
    import accelsim.hw.load as hw_load

    def boom(*a, **k):
        raise OSError(36, "File name too long", "x\ny.yaml")

    monkeypatch.setattr(hw_load, "read_mapping", boom)
    path = tmp_path / "hw.yaml"
    path.write_text(TINY_HW)
    _one_error(*run_cli("hw", "show", path), "x\\ny.yaml", "File name too long")


def test_out_in_a_read_only_directory_is_refused_before_any_work(tmp_path, run_cli,
                                                                  monkeypatch):
    """As root every directory is writable to access(); the refusal is tested through it."""
    import accelsim._io as io_mod
    real = os.access
    monkeypatch.setattr(io_mod.os, "access",
                        lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    rc, out, err = run_cli("simulate", "--hw", "gemmini", "--gemm", "8,8,8", "--out",
                           tmp_path / "r.json")
    _one_error(rc, out, err, tmp_path, "--out: cannot write in this directory")
    assert list(tmp_path.iterdir()) == []
