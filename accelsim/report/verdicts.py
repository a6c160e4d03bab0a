"""The verdict rules of ``accelsim validate``: small pure functions from measured numbers to
a :class:`Verdict` (``supported``, ``not supported`` or ``inconclusive``) and the sentence
that explains it.

Every rule can reach each of its outcomes from the measurement alone (tests drive each one
to every outcome with constructed inputs); the thresholds are arguments with documented
defaults, and each explanation states the threshold it applied and is generated from the
numbers, never fixed text.

Examples
--------
>>> speedup({1: 2.0, 8: 1.9}).verdict
'supported'
>>> speedup({1: 0.9, 8: 0.95}).verdict
'not supported'
>>> fewer_devices(109, {"fp16": 620, "int8": 319}).verdict
'supported'
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["Verdict", "SUPPORTED", "NOT_SUPPORTED", "INCONCLUSIVE", "routing_stability",
           "fewer_devices", "size_accounting", "speedup", "fewer_bytes", "fits_one_device",
           "overhead", "paired_accuracy", "not_measurable", "wilson_interval",
           "SPEEDUP_MARGIN", "SIZE_ROUNDING_GB", "OVERHEAD_NEGLIGIBLE"]

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"

#: A speed-up (or byte reduction) counts as one when it exceeds 1 by this much: below it, a
#: difference is within what a change of tiling or phase schedule moves a simulated step.
SPEEDUP_MARGIN = 0.05
#: Half a unit of the last digit the paper prints its sizes with (one decimal, in GB).
SIZE_ROUNDING_GB = 0.05
#: "Negligible" overhead: at most this fraction of the cost it is compared with.
OVERHEAD_NEGLIGIBLE = 0.1


@dataclass(frozen=True)
class Verdict:
    """A verdict, its explanation and the statistic it was decided on."""

    verdict: str
    explanation: str
    value: Any = None


def not_measurable(reason: str) -> Verdict:
    """``inconclusive`` because accelsim cannot measure what the claim needs."""
    return Verdict(INCONCLUSIVE, reason)


def wilson_interval(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed over ``n`` trials.

    >>> [round(v, 3) for v in wilson_interval(0.5, 100)]
    [0.404, 0.596]
    """
    if n <= 0:
        return 0.0, 1.0
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


# ----------------------------------------------------------------------------- routing


def routing_stability(layers: Sequence[Mapping[str, float]], tokens: int, *,
                      router_float: bool = True, threshold: float = 0.5) -> Verdict:
    """"The routing of most tokens is provably stable".

    ``layers``: per MoE layer ``layer``, ``eps_in_mean`` (bound on the perturbation entering
    it), ``certified`` and ``unchanged`` (shares of ``tokens``). A layer with no incoming
    perturbation and a float router is certified by construction and left out. The
    statistic is the mean certified share over the remaining layers; with its 95% Wilson
    interval over ``tokens`` tokens, it is ``supported`` above ``threshold`` ("most": more
    than half), ``not supported`` below it, ``inconclusive`` when the interval holds it or
    when no layer is left.
    """
    kept = [r for r in layers if not (router_float and float(r["eps_in_mean"]) == 0.0)]
    trivial = [int(r["layer"]) for r in layers if r not in kept]
    per = ", ".join(f"layer {int(r['layer'])}: {float(r['certified']):.2f}" for r in layers)
    skip = (f"; layer(s) {trivial} left out: no incoming perturbation and a float router "
            f"certify them by construction" if trivial else "")
    if not kept:
        return Verdict(INCONCLUSIVE, f"certified share per layer: {per}{skip}; no layer with "
                       f"an incoming perturbation was measured", None)
    p = float(np.mean([float(r["certified"]) for r in kept]))
    unchanged = float(np.mean([float(r["unchanged"]) for r in kept]))
    lo, hi = wilson_interval(p, int(tokens))
    verdict = SUPPORTED if lo > threshold else NOT_SUPPORTED if hi < threshold else INCONCLUSIVE
    word = {SUPPORTED: "above", NOT_SUPPORTED: "below", INCONCLUSIVE: "not clearly above or "
            "below"}[verdict]
    return Verdict(verdict, (
        f"certified share per layer: {per}{skip}. Mean over the {len(kept)} layer(s) kept: "
        f"{p:.3f} (95% interval {lo:.3f}-{hi:.3f} over {tokens} tokens), {word} the "
        f"threshold {threshold:g} ('most tokens'). Measured: the top-k set of {unchanged:.3f} "
        f"of the tokens is actually unchanged in those layers; the certificate is a "
        f"conservative bound, so a token it does not certify may still keep its experts"), p)


# ----------------------------------------------------------------------------- devices


def fewer_devices(mixed: int | None, baselines: Mapping[str, int | None], *,
                  label: str = "the mixed allocation", unit: str = "chips") -> Verdict:
    """``label`` needs fewer ``unit`` than every baseline: ``supported`` when strictly
    fewer than each, ``not supported`` when as many or more than one of them,
    ``inconclusive`` when a count is missing (None) or when the mixed allocation itself
    did not fit the largest system tried (``math.inf``). A baseline at ``math.inf`` (did not
    fit) needs more than any count that fits."""
    missing = [b for b, n in baselines.items() if n is None]
    if mixed is None or not baselines or missing or mixed == math.inf:
        what = ([label] if mixed is None or mixed == math.inf else []) + missing
        return Verdict(INCONCLUSIVE, f"no device count for {', '.join(what) or 'a baseline'}"
                       f" (not measured, or did not fit the largest system tried)", None)

    def show(n):
        return "more than the largest system" if n == math.inf else f"{int(n)}"

    counts = ", ".join(f"{b} {show(n)}" for b, n in baselines.items())
    worse = [b for b, n in baselines.items() if int(mixed) >= n]
    if worse:
        return Verdict(NOT_SUPPORTED, f"{label} needs {int(mixed)} {unit}, not fewer than "
                       f"{', '.join(worse)} ({counts})", int(mixed))
    return Verdict(SUPPORTED, f"{label} needs {int(mixed)} {unit}, fewer than each of "
                   f"{counts}", int(mixed))


# ----------------------------------------------------------------------------- size


def size_accounting(paper_gb: Mapping[str, float],
                    measured_gb: Mapping[str, Mapping[str, float]], *,
                    tol_gb: float = SIZE_ROUNDING_GB) -> tuple[dict[str, Verdict], str | None]:
    """Model sizes against the paper's, under several named storage accountings.

    ``measured_gb[accounting][label]`` is accelsim's size of row ``label`` under one way of
    counting (scale and zero-point formats, which tensors stay at 16 bits, GB or GiB);
    ``paper_gb[label]`` the paper's. The *consensus* accounting is the one that matches the
    most rows within ``tol_gb`` (half the last printed digit; ties: smallest total error).
    Per row: ``supported`` when the consensus accounting matches it; ``not supported`` when
    the paper's number is outside the range every named accounting spans (widened by
    ``tol_gb``), so no way of counting we can name explains it; ``inconclusive`` otherwise
    (some accounting, or a mix of them, could explain this row but not the others').
    Returns (verdict per label, consensus accounting name or None).
    """
    names = list(measured_gb)
    labels = [lb for lb in paper_gb if all(lb in measured_gb[a] for a in names)]

    def score(a: str) -> tuple[int, float]:
        errs = [abs(measured_gb[a][lb] - paper_gb[lb]) for lb in labels]
        return sum(e <= tol_gb for e in errs), -sum(errs)

    best = max(names, key=score) if names and labels else None
    if best is not None and score(best)[0] == 0:
        best = None
    out: dict[str, Verdict] = {}
    for lb in labels:
        paper = float(paper_gb[lb])
        vals = {a: float(measured_gb[a][lb]) for a in names}
        lo, hi = min(vals.values()), max(vals.values())
        near = [a for a, v in vals.items() if abs(v - paper) <= tol_gb]
        listing = "; ".join(f"{a}: {v:.2f}" for a, v in vals.items())
        head = (f"paper {paper:g} GB; accelsim under each accounting (GB): {listing}. "
                f"Tolerance {tol_gb:g} GB (half the last digit the paper prints). ")
        if best is not None and best in near:
            out[lb] = Verdict(SUPPORTED, head + (
                f"The accounting that matches the most rows ({best}) gives "
                f"{vals[best]:.2f} GB, {vals[best] - paper:+.2f} GB from the paper"), vals[best])
        elif paper < lo - tol_gb or paper > hi + tol_gb:
            edge = hi if paper > hi else lo
            out[lb] = Verdict(NOT_SUPPORTED, head + (
                f"No named accounting reaches the paper: it is {paper - edge:+.2f} GB from "
                f"the nearest ({edge:.2f}), outside the {lo:.2f}-{hi:.2f} GB they span; the "
                f"difference is not explained by scale/zero formats, 16-bit tensors or "
                f"GB vs GiB"), vals[names[0]])
        else:
            why = (f"Accounting(s) {', '.join(near)} match this row but not the most rows"
                   if near else "The paper lies between the accountings, matched by none")
            out[lb] = Verdict(INCONCLUSIVE, head + why + (
                f" (consensus: {best})" if best else " (no accounting matches any row)"),
                vals[names[0]])
    return out, best


# ----------------------------------------------------------------------------- latency


def speedup(speedups: Mapping[Any, float | None], *, margin: float = SPEEDUP_MARGIN,
            what: str = "batch") -> Verdict:
    """"Fewer bits lower latency": speed-ups (baseline time / new time) per ``what``.

    ``supported`` when every known speed-up is at least ``1 + margin``, ``not supported``
    when none exceeds 1 (no faster anywhere), ``inconclusive`` otherwise or with no value.
    """
    known = {k: float(v) for k, v in speedups.items() if v is not None}
    text = ", ".join(f"{what} {k}: {v:.2f}x" for k, v in known.items())
    if not known:
        return Verdict(INCONCLUSIVE, "no speed-up measured (an allocation did not fit)", None)
    if all(v >= 1 + margin for v in known.values()):
        return Verdict(SUPPORTED, f"speed-up {text}: all at least {1 + margin:g}x", known)
    if all(v <= 1.0 for v in known.values()):
        return Verdict(NOT_SUPPORTED, f"speed-up {text}: none above 1x", known)
    return Verdict(INCONCLUSIVE, f"speed-up {text}: not all at least {1 + margin:g}x "
                   f"(the margin a re-tiling moves a step), not all below 1x", known)


def fewer_bytes(ratio: float | None, *, margin: float = SPEEDUP_MARGIN) -> Verdict:
    """Baseline bytes / new bytes: ``supported`` at ``1 + margin`` or more, ``not supported``
    at 1 or less, ``inconclusive`` between (or unknown)."""
    if ratio is None or not math.isfinite(ratio):
        return Verdict(INCONCLUSIVE, "no byte count measured", None)
    if ratio >= 1 + margin:
        return Verdict(SUPPORTED, f"{ratio:.2f}x fewer bytes (threshold {1 + margin:g}x)",
                       ratio)
    if ratio <= 1.0:
        return Verdict(NOT_SUPPORTED, f"{ratio:.2f}x: not fewer bytes", ratio)
    return Verdict(INCONCLUSIVE, f"{ratio:.2f}x: fewer, but less than the {1 + margin:g}x "
                   f"threshold", ratio)


# ----------------------------------------------------------------------------- fitting


def fits_one_device(best_bytes: float, fp16_bytes: float, capacity: float, *,
                    rel_tol: float = 0.02) -> Verdict:
    """"Low-bit fits one device, FP16 does not": ``supported`` when the smallest low-bit
    need is below ``capacity`` and FP16's above it, each by more than ``rel_tol`` (the
    accounting uncertainty of a size); ``not supported`` when the low-bit need is above
    it or FP16's below it by that much; ``inconclusive`` when either is within it."""
    lo, hi = capacity * (1 - rel_tol), capacity * (1 + rel_tol)
    text = (f"smallest low-bit need {best_bytes / 1e9:.2f} GB, FP16 {fp16_bytes / 1e9:.2f} GB, "
            f"capacity {capacity / 1e9:.2f} GB (+-{rel_tol:.0%} accounting tolerance)")
    if best_bytes <= lo and fp16_bytes > hi:
        return Verdict(SUPPORTED, text, best_bytes)
    if best_bytes > hi or fp16_bytes <= lo:
        return Verdict(NOT_SUPPORTED, text + (": the low-bit model does not fit"
                                              if best_bytes > hi else ": FP16 fits too"),
                       best_bytes)
    return Verdict(INCONCLUSIVE, text + ": within the tolerance of the capacity", best_bytes)


# ----------------------------------------------------------------------------- overhead


def overhead(seconds: float, published_s: float | None, *, source: str = "",
             negligible: float = OVERHEAD_NEGLIGIBLE) -> Verdict:
    """"Router-norm's overhead is negligible next to PMQ": ``seconds`` (signals and
    allocation, at the model's size) against PMQ's published cost ``published_s``.
    ``supported`` at most ``negligible`` times it, ``not supported`` at or above it,
    ``inconclusive`` between, or when no published cost is known."""
    if published_s is None:
        return Verdict(INCONCLUSIVE, f"router-norm takes {seconds:.3g} s; PMQ's published "
                       f"cost is not known to accelsim{': ' + source if source else ''}, so "
                       f"there is nothing published to compare with", seconds)
    r = seconds / published_s
    text = (f"router-norm {seconds:.3g} s vs PMQ's published {published_s:.3g} s ({source}):"
            f" {r:.3g} of it; negligible means at most {negligible:g}")
    if r <= negligible:
        return Verdict(SUPPORTED, text, seconds)
    if r >= 1.0:
        return Verdict(NOT_SUPPORTED, text, seconds)
    return Verdict(INCONCLUSIVE, text, seconds)


# ----------------------------------------------------------------------------- accuracy


def paired_accuracy(diffs: Sequence[float], *, other: str = "the best other allocation",
                    level: float = 0.95) -> Verdict:
    """"Router-norm is more accurate than ``other``": per-seed paired differences
    (router-norm minus ``other``, same trained model). With the mean and its Student-t
    ``level`` interval: ``supported`` when the interval is above 0, ``not supported`` when
    below, ``inconclusive`` when it holds 0 or with fewer than 2 seeds."""
    d = np.asarray(list(diffs), dtype=float)
    n = d.size
    if n < 2:
        return Verdict(INCONCLUSIVE, f"{n} seed(s): a standard error needs at least 2", None)
    from scipy.stats import t as student_t
    mean = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(n))
    q = float(student_t.ppf(0.5 + level / 2, n - 1))
    lo, hi = mean - q * se, mean + q * se
    text = (f"router-norm minus {other}: {mean:+.4f} (standard error {se:.4f} over {n} "
            f"seeds, {level:.0%} interval {lo:+.4f} to {hi:+.4f})")
    if lo > 0:
        return Verdict(SUPPORTED, text + ": above 0", mean)
    if hi < 0:
        return Verdict(NOT_SUPPORTED, text + ": below 0", mean)
    return Verdict(INCONCLUSIVE, text + ": holds 0", mean)
