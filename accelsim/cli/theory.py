"""``accelsim theory``: certified guarantees and the paper's experiment.

::

    accelsim theory certify --workload mixtral-8x7b --alloc 4
    accelsim theory certify --workload mixtral-8x7b --alloc alloc.yaml --checkpoint ckpt/
    accelsim theory experiment --seeds 5 --bits 2,2.5,3 --data synthetic --out results/
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import click

from ..errors import ConfigError, Problem
from ._common import check_out_path, emit, format_option, render_table, to_json, write_atomic

__all__ = ["command"]

_CERT_COLUMNS = ["layer", "eps_in_mean", "certified", "unchanged", "bound_mean", "bound_max",
                 "measured_mean", "measured_max", "hidden_norm_mean"]
_EXP_COLUMNS = ["data", "method", "avg_bits", "accuracy", "accuracy_std", "seeds"]


def _csv(rows: list[dict], columns: list[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _progress():
    """Progress lines on stderr (stdout stays the result), with the elapsed time."""
    import time
    t0 = time.perf_counter()

    def say(msg: str) -> None:
        click.echo(f"[{time.perf_counter() - t0:6.1f} s] {msg}", err=True)
    return say


@click.group("theory")
def command():
    """Certified bounds on quantized experts and routing; the paper's experiment."""


def _load_alloc(spec: str, model):
    """ALLOC is an allocation file or a whole number of bits for every expert."""
    from ..precision import BitAllocation, split_point
    text = spec.strip()
    if text.isdigit():
        bits = int(text)
        if not (1 <= bits <= 8 or bits == 16):
            raise ConfigError.single("uniform bits must be in 1..8 or 16", key="--alloc",
                                     value=spec)
        return BitAllocation.uniform(model, bits)
    path = str(Path(text).expanduser())
    if not Path(split_point(path)[0]).is_file():
        raise ConfigError.single("must be an allocation file (YAML/JSON) or a number of bits",
                                 key="--alloc", value=spec)
    return BitAllocation.load(path, model)


@command.command("certify")
@click.option("--workload", "wl", required=True, metavar="WL",
              help="Model preset name, model YAML or config.json.")
@click.option("--alloc", "alloc_spec", required=True, metavar="ALLOC",
              help="A BitAllocation file (FILE#N: point N of a Pareto front), or a "
                   "number of bits for every expert.")
@click.option("--checkpoint", type=click.Path(exists=True), default=None, metavar="FILE",
              help="Safetensors checkpoint (file, directory or index JSON); default: "
                   "synthetic Gaussian weights at reduced scale.")
@click.option("--tokens", type=click.IntRange(1, 1 << 20), default=256, show_default=True,
              help="Random tokens pushed through the stack.")
@click.option("--layers", type=click.IntRange(1, 4096), default=None,
              help="First N MoE layers (default 4; 2 for models with > 16 experts).")
@click.option("--scale", type=click.IntRange(1, 1 << 16), default=None,
              help="Synthetic weights: divide hidden and FFN sizes by S (default: the "
                   "smallest power of two giving sizes <= 512 and <= 4M expert weights "
                   "per layer; 1 = real size, slow).")
@click.option("--bound", "method", type=click.Choice(["hybrid", "analytic"]),
              default="hybrid", show_default=True,
              help="Expert bound: hybrid evaluates the quantized expert at the float token; "
                   "analytic uses norms only.")
@click.option("--attn-lipschitz", type=click.FloatRange(0.0, 1e6), default=0.0,
              show_default=True, help="Assumed Lipschitz constant of each attention block.")
@click.option("--seed", type=int, default=0, show_default=True)
@format_option("table", "json", "csv")
@click.option("--out", default=None, metavar="FILE", help="Write the output to FILE.")
def certify_cmd(wl, alloc_spec, checkpoint, tokens, layers, scale, method, attn_lipschitz,
                seed, fmt, out):
    """Per MoE layer: a certified bound on the hidden-state perturbation caused by
    quantization, the share of tokens whose top-k routing is certified, and the measured
    values of the same run."""
    from ..theory.certify import certify_model
    from ..workload import load_workload

    check_out_path(out)
    model = load_workload(wl)
    alloc = _load_alloc(alloc_spec, model)
    rep = certify_model(model, alloc, checkpoint=checkpoint, tokens=tokens, layers=layers,
                        scale=scale, method=method, attn_lipschitz=attn_lipschitz,
                        seed=seed, progress=_progress())
    if fmt == "json":
        emit(to_json({"setup": rep.setup, "layers": rep.rows}), out)
    elif fmt == "csv":
        emit(_csv(rep.rows, _CERT_COLUMNS), out)
    else:
        head = [f"{k}: {v}" for k, v in rep.setup.items()]
        legend = ("eps_in: bound on ||h_q - h|| entering the layer; certified / unchanged: "
                  "share of tokens whose routing is certified / measured unchanged; bound, "
                  "measured: ||h_q - h|| leaving the layer")
        emit("\n".join(head + [legend, ""]) + render_table(rep.rows, _CERT_COLUMNS), out)


def _parse_bits(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise ConfigError.single("must be comma-separated numbers like 2,2.5,3",
                                 key="--bits", value=text) from None
    if not vals or any(not 1.0 <= v <= 8.0 for v in vals):
        raise ConfigError.single("average bits must be in 1..8", key="--bits", value=text)
    return vals


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datas = sorted({r["data"] for r in rows})
    fig, axes = plt.subplots(1, len(datas), figsize=(5.5 * len(datas), 4), squeeze=False)
    for ax, data in zip(axes[0], datas):
        sub = [r for r in rows if r["data"] == data]
        for method in dict.fromkeys(r["method"] for r in sub if r["method"] != "float"):
            pts = sorted((r["avg_bits"], r["accuracy"], r["accuracy_std"]) for r in sub
                         if r["method"] == method)
            x, y, e = zip(*pts)
            ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=method)
        for r in sub:
            if r["method"] == "float":
                ax.axhline(r["accuracy"], color="gray", ls="--", label="float")
        ax.set_xlabel("average expert bits")
        ax.set_ylabel("test accuracy")
        ax.set_title(f"{data} (mean +- std over {sub[0]['seeds']} seeds)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buf.getvalue())


@command.command("experiment")
@click.option("--seeds", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--bits", "bits_text", default="2,2.5,3", show_default=True,
              help="Average expert bits, comma-separated.")
@click.option("--data", type=click.Choice(["synthetic", "digits"]), default="synthetic",
              show_default=True)
@click.option("--steps", type=click.IntRange(1, 100000), default=300, show_default=True,
              help="Adam steps of pre-training and of fine-tuning.")
@click.option("--samples", type=click.IntRange(10, 1000000), default=2000,
              show_default=True, help="Synthetic samples per split.")
@click.option("--prune", is_flag=True,
              help="Also run the pruning variants (levels 2b/b/0 at the same average bits: "
                   "the experts ranked last are pruned) to compare pruning with low-bit "
                   "quantization at matched memory.")
@format_option("table", "json", "csv")
@click.option("--out", "out_dir", default=None, metavar="DIR",
              help="Also write experiment.json, experiment.csv and experiment.png to DIR.")
def experiment_cmd(seeds, bits_text, data, steps, samples, prune, fmt, out_dir):
    """The paper's experiment: pre-train and fine-tune a patch-level MoE, quantize its
    experts with RTN at matched average bits under five allocations, report test accuracy
    (mean and std over seeds). The 'float' row is the unquantized model."""
    from ..theory.experiment import METHODS, PRUNE_METHODS, ExperimentConfig, run_experiment

    bits = _parse_bits(bits_text)
    out = None
    if out_dir is not None:
        out = Path(out_dir).expanduser()
        if out.exists() and not out.is_dir():
            raise ConfigError([Problem("exists and is not a directory", key="--out",
                                       value=out_dir)])
        if not out.resolve().parent.is_dir():
            raise ConfigError.single("parent directory does not exist", key="--out",
                                     value=out_dir)
    methods = METHODS + (PRUNE_METHODS if prune else ())
    rows = run_experiment(ExperimentConfig(data=data, seeds=seeds, bits=bits, steps=steps,
                                           samples=samples, methods=methods),
                          progress=_progress())
    if out is not None:
        out.mkdir(exist_ok=True)
        write_atomic(out / "experiment.json", to_json(rows) + "\n")
        write_atomic(out / "experiment.csv", _csv(rows, _EXP_COLUMNS))
        _plot(rows, out / "experiment.png")
    if fmt == "json":
        emit(to_json(rows))
    elif fmt == "csv":
        emit(_csv(rows, _EXP_COLUMNS))
    else:
        emit(render_table(rows, _EXP_COLUMNS))
