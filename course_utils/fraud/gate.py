"""A promotion gate for fraud-model candidates: certify, report, and exit non-zero when short.

    python -m course_utils.gate --model PATH --radius R --min-certified-accuracy A \
        [--min-certified-recall B] [--out DIR] [--n 4000] [--seed 2024]

(``python -m course_utils.gate`` is an alias of ``python -m course_utils.fraud.gate``.)

PATH is a checkpoint written by ``training.save_checkpoint(model, PATH, meta)``: the state dict
plus the sidecar ``PATH.json`` holding its SHA-256 and ``meta``:

    {"architecture": "fraud_mlp", "architecture_kwargs": {"hidden": 64},
     "scaler": FeatureScaler.to_dict(), "certifier": "ibp" | "crown" | "alpha-crown" | "smoothing",
     "sigma": 0.05 (smoothing only), "name": "...", ...}

The gate owns the evaluation data, so a candidate cannot choose an easy test set: ``--n``
transactions from ``fraud.make_transactions(seed=--seed)``, scaled with the candidate's scaler.
R is in model units (see ``fraud.threat_radii``): for ``ibp`` the L-infinity radius on the
attacker-controlled features (``fraud.CONTROLLED``), verified with interval bounds (sound,
deterministic); for ``crown`` the same radius, verified with CROWN's linear bounds
(``certify.verified_by("crown", ...)``: sound and deterministic, usually tighter than IBP and
slower); for ``alpha-crown`` the same radius with CROWN's lower slopes optimised (Xu et al. 2021,
``certify.verified_by("alpha-crown", ...)``: never looser than CROWN); for ``smoothing`` the L2 radius, certified with ``certify.Smooth`` (n0=100,
n=``--samples``, alpha=0.001). A transaction counts when it is classified correctly *and* certified
at R. Certified recall is the same over fraud cases only: with 2% fraud, a model that never flags
fraud has 98% certified accuracy, so gate on both. The model's own clean accuracy and recall (its
argmax, whatever the certifier) must reach the same thresholds: a smoothing certificate is about
the smoothed classifier, and a huge sigma makes that a constant however bad the model is.
Certificates are computed only for parameters in range (``certificate_parameters``: radius and
sigma finite > 0, n >= 1, 0 < alpha < 1).

Writes ``DIR/report.json`` and ``DIR/report.md``. Exit codes: 0 passed, 1 below a threshold,
2 bad input (missing, tampered or unreadable model, radius <= 0, threshold outside [0, 1], sigma
not finite > 0, non-finite features or logits); a model is never reported as passing unless it
was loaded intact and certified.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

from ..certify import Smooth, verified_by
from ..evaluation import EvalResult
from . import data as fraud
from ..training import ModelFileError, load_model_file
from ..validation import check_positive, check_positive_int, check_probability

ARCHITECTURES = {"fraud_mlp": fraud.fraud_mlp}
EXIT_PASS, EXIT_SHORT, EXIT_BAD_INPUT = 0, 1, 2
CERTIFIERS = ("ibp", "crown", "alpha-crown", "smoothing")  # deterministic L-infinity bounds (IBP, CROWN, alpha-CROWN) or L2 smoothing
SMOOTHING_N0, SMOOTHING_ALPHA = 100, 0.001  # CERTIFY's selection samples and significance level


class GateError(ModelFileError):
    """Bad input to the gate (exit code 2): a ``training.ModelFileError`` or a bad gate argument."""


def certificate_parameters(method: str, radius, meta: dict, samples: int | None = None) -> dict:
    """The parameters of the certificate ``method`` is about to compute, each checked (else GateError).

    radius (eps for ibp / crown / alpha-crown, R for smoothing): finite > 0; smoothing also needs sigma finite > 0
    (from the sidecar), n0 and n = ``samples`` >= 1 and 0 < alpha < 1. A certificate outside these
    ranges proves nothing (sigma = inf "certifies" a constant prediction at every radius), so the
    gate computes and reports certificates only for parameters in range."""
    try:
        params = {"radius": check_positive(radius, "radius")}
        if method == "smoothing":
            params.update(sigma=check_positive(meta.get("sigma"), "sigma"), n0=check_positive_int(SMOOTHING_N0, "n0"),
                          n=check_positive_int(samples, "n (--samples)"),
                          alpha=check_probability(SMOOTHING_ALPHA, "alpha"))
    except ValueError as e:
        raise GateError(f"{method} certificate: {e}") from None
    return params


def load_candidate(path):
    """(model in eval mode, meta dict, scaler) from a checkpoint and its sidecar; GateError if anything is off.

    The file checks are the course's one safe loader, ``training.load_model_file``; the gate adds its
    own sidecar rules (certifier, sigma, scaler)."""
    try:
        model, meta = load_model_file(path, ARCHITECTURES)  # SHA-256 check, weights_only=True
        if meta.get("certifier", "ibp") not in CERTIFIERS:
            raise GateError(f"certifier must be one of {CERTIFIERS}, got {meta.get('certifier')!r}")
        if meta.get("certifier") == "smoothing":
            check_positive(meta.get("sigma"), "sigma")  # JSON's Infinity would certify anything
        scaler = fraud.FeatureScaler.from_dict(meta.get("scaler"))
    except ModelFileError as e:
        raise GateError(str(e)) from None
    except (ValueError, TypeError) as e:
        raise GateError(f"sidecar of {path}: {e}") from None
    return model, meta, scaler


def certify_candidate(model, meta, scaler, radius: float, n: int = 4000, seed: int = 2024, samples: int = 1000):
    """Certified accuracy and recall of a loaded candidate on the gate's own data; returns a dict.

    Also the model's own clean accuracy and recall (``model_clean_*``: its argmax, whatever the
    certifier), which ``run_gate`` requires to reach the thresholds too. GateError when the
    certificate's parameters are out of range (``certificate_parameters``) or the candidate's
    scaler or weights give non-finite features or logits."""
    df = fraud.make_transactions(n, seed=seed)
    x = torch.from_numpy(scaler.transform(df))
    y = torch.from_numpy(df["is_fraud"].to_numpy().copy()).long()
    with torch.no_grad():
        logits = model(x)
    for what, v in (("features (check the scaler)", x), ("logits (check the weights)", logits)):
        if not torch.isfinite(v).all():
            raise GateError(f"the candidate gives non-finite {what} on {int((~torch.isfinite(v)).any(1).sum())} "
                            "of the gate's transactions")
    pred = logits.argmax(1)
    model_clean = {"model_clean_accuracy": _rate(pred == y), "model_clean_recall": _rate(pred[y == 1] == 1)}
    t0 = time.perf_counter()
    method = meta.get("certifier", "ibp")
    params = certificate_parameters(method, radius, meta, samples)  # GateError unless every parameter is in range
    if method in ("ibp", "crown", "alpha-crown"):
        eps = torch.from_numpy(fraud.controlled_mask()) * radius
        with torch.no_grad():
            cert = verified_by(method, model, x, y, eps) & (pred == y)
        threat = f"{method.upper()} linf eps={radius:g} on {', '.join(fraud.CONTROLLED)} (model units)"
    else:
        smooth = Smooth(model, 2, params["sigma"], generator=torch.Generator().manual_seed(seed))
        out = [smooth.certify(x[i], params["n0"], params["n"], params["alpha"], 2000) for i in range(len(x))]
        pred = torch.tensor([c for c, _ in out])
        cert = torch.tensor([c == int(t) and r >= radius for (c, r), t in zip(out, y)])
        threat = (f"randomized smoothing l2 R={radius:g} sigma={params['sigma']:g} n0={params['n0']} n={params['n']} "
                  f"alpha={params['alpha']:g}")
    fraud_idx = y == 1
    acc = EvalResult(int(cert.sum()), len(y), threat)
    rec = EvalResult(int(cert[fraud_idx].sum()), int(fraud_idx.sum()), threat + " (fraud only)")
    return {
        "threat_model": threat, "radius": radius, "transactions": len(y), "fraud_cases": int(fraud_idx.sum()),
        "data": f"fraud.make_transactions(n={n}, seed={seed}) (synthetic)",
        "clean_accuracy": _rate(pred == y), "clean_recall": _rate(pred[fraud_idx] == 1), **model_clean,
        "certified_accuracy": acc.accuracy, "certified_accuracy_ci95": acc.ci,
        "certified_recall": rec.accuracy, "certified_recall_ci95": rec.ci,
        "certify_seconds": time.perf_counter() - t0,
        "implied_tolerance": {f: radius * scaler.scale(f) for f in fraud.CONTROLLED},
    }


def markdown_report(report: dict) -> str:
    mark = "PASSED" if report["passed"] else "FAILED"
    lo, hi = report["certified_accuracy_ci95"]
    rlo, rhi = report["certified_recall_ci95"]
    return "\n".join([
        f"# Promotion gate: {report['model_name']} {mark}", "",
        f"- model: `{report['model']}` (SHA-256 `{report['sha256'][:16]}...`)",
        f"- threat model: {report['threat_model']}",
        "- radius in feature units (this candidate's scaler): "
        + ", ".join(f"{f} +-{v:.3g} {fraud.UNITS[f]}" for f, v in report["implied_tolerance"].items()),
        f"- data: {report['data']}, {report['transactions']} transactions, {report['fraud_cases']} fraud", "",
        "| metric | value | 95% CI | required |", "| --- | --- | --- | --- |",
        f"| certified accuracy | {report['certified_accuracy']:.4f} | {lo:.4f}-{hi:.4f} | >= {report['min_certified_accuracy']} |",
        f"| certified fraud recall | {report['certified_recall']:.4f} | {rlo:.4f}-{rhi:.4f} | >= {report['min_certified_recall']} |",
        f"| clean accuracy | {report['clean_accuracy']:.4f} | | |",
        f"| clean fraud recall | {report['clean_recall']:.4f} | | |",
        f"| the model's own clean accuracy | {report['model_clean_accuracy']:.4f} | | >= {report['min_certified_accuracy']} |",
        f"| the model's own clean fraud recall | {report['model_clean_recall']:.4f} | | >= {report['min_certified_recall']} |",
        "",
        f"Decision: **{mark}**" + ("" if report["passed"] else f" ({'; '.join(report['reasons'])})"), "",
    ])


def _rate(hits: torch.Tensor) -> float:
    """The share of True in a bool tensor as an exact fraction of counts (float64; NaN when empty), so that
    45 of 50 is 0.9 exactly and meets a 0.9 threshold (a float32 mean gives 0.89999998)."""
    return int(hits.sum()) / hits.numel() if hits.numel() else float("nan")


def run_gate(model, radius, min_certified_accuracy, min_certified_recall=0.0, out=None, n=4000, seed=2024,
             samples=1000) -> tuple[int, dict]:
    """Check inputs, certify, write the reports; returns (exit code, report). Raises GateError on bad input."""
    for name, v in (("radius", radius),):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise GateError(f"{name} must be a finite number > 0, got {v!r}")
    for name, v in (("min-certified-accuracy", min_certified_accuracy), ("min-certified-recall", min_certified_recall)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or not 0 <= v <= 1:
            raise GateError(f"{name} must be in [0, 1], got {v!r}")
    if n < 10 or samples < 1:
        raise GateError(f"n must be >= 10 and samples >= 1, got n={n}, samples={samples}")
    net, meta, scaler = load_candidate(model)
    report = {"model": str(model), "model_name": meta.get("name", Path(model).stem), "sha256": meta["sha256"],
              "certifier": meta.get("certifier", "ibp"), "min_certified_accuracy": min_certified_accuracy,
              "min_certified_recall": min_certified_recall}
    report.update(certify_candidate(net, meta, scaler, float(radius), n, seed, samples))
    reasons = [] if report["fraud_cases"] else ["no fraud case among the gate's transactions: recall cannot be "
                                                 "measured (raise --n)"]
    # A rate must reach its threshold: `not v >= t` also fails a NaN. The certificate speaks for the
    # classifier it certified (for smoothing, the smoothed one); the model promoted must itself reach
    # the bar on clean data, whatever its sidecar says.
    for key, label, threshold in (("certified_accuracy", "certified accuracy", min_certified_accuracy),
                                  ("certified_recall", "certified recall", min_certified_recall),
                                  ("model_clean_accuracy", "the model's own clean accuracy", min_certified_accuracy),
                                  ("model_clean_recall", "the model's own clean recall", min_certified_recall)):
        if not report[key] >= threshold:
            reasons.append(f"{label} {report[key]:.4f} < {threshold}")
    report["passed"], report["reasons"] = not reasons, reasons
    out = Path(out) if out is not None else Path(model).parent / f"{Path(model).stem}.gate"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2))
    (out / "report.md").write_text(markdown_report(report))
    return (EXIT_PASS if not reasons else EXIT_SHORT), report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m course_utils.gate", description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="checkpoint saved by training.save_checkpoint (with PATH.json)")
    p.add_argument("--radius", required=True, type=float, help="certification radius in model units (> 0)")
    p.add_argument("--min-certified-accuracy", required=True, type=float, help="required certified accuracy in [0, 1]")
    p.add_argument("--min-certified-recall", type=float, default=0.0, help="required certified fraud recall in [0, 1]")
    p.add_argument("--out", default=None, help="report folder (default: PATH's folder / <stem>.gate)")
    p.add_argument("--n", type=int, default=4000, help="evaluation transactions (synthetic, owned by the gate)")
    p.add_argument("--seed", type=int, default=2024, help="seed of the evaluation transactions")
    p.add_argument("--samples", type=int, default=1000, help="noise samples n per transaction (smoothing)")
    args = p.parse_args(argv)
    try:
        code, report = run_gate(args.model, args.radius, args.min_certified_accuracy, args.min_certified_recall,
                                args.out, args.n, args.seed, args.samples)
    except GateError as e:
        print(f"gate: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as e:  # anything unexpected is a refusal too, never a promotion
        print(f"gate: error: {type(e).__name__}: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(markdown_report(report))
    return code


if __name__ == "__main__":
    sys.exit(main())
