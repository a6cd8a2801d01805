"""One row of the project's summary table per defended system (shared by the notebook and the benchmark).

``evaluate_system(name, pipeline, token_lists, labels, candidates, budget)`` measures, on the same
test sentences: clean accuracy (Clopper-Pearson 95% CI), the clean-text flag rate (the false-positive
rate of the out-of-distribution flag) and repair rate, verified accuracy under the synonym threat
model (when the pipeline certifies), and the greedy attack's success rate for each threat model in
``candidates``. The attacker is adaptive: it queries the whole pipeline (spell-checker included),
and against a flagging pipeline a flip only counts when the final text is not flagged.
"""
from __future__ import annotations

import time

import torch

from ..evaluation import EvalResult
from . import ibp
from .attacks import attack_many, success_rate


def _rate(k, n):
    r = EvalResult(k, n)
    lo, hi = r.ci
    return f"{100 * r.accuracy:.1f}% [{100 * lo:.0f}, {100 * hi:.0f}] (n={n})" if n else "n/a"


def evaluate_system(name, pipe, token_lists, labels, candidates: dict, budget: int, table, n_attack: int | None = None,
                    progress: bool = True):
    """(row dict for the summary table, {kind: list of AttackResult}).

    table: the synonym substitution table (``ibp.substitution_table``) for verified accuracy, whether or
    not the pipeline itself certifies; ``n_attack``: attack only the first n sentences.
    """
    start = time.perf_counter()
    labels = torch.as_tensor(labels)
    fixed = [pipe.sanitize(t) for t in token_lists]
    probs = pipe.predict_tokens(token_lists)
    correct = int((probs.argmax(1) == labels).sum())
    row = {"system": name, "clean accuracy": _rate(correct, len(labels)),
           "repaired (clean)": f"{100 * sum(n > 0 for _, n in fixed) / len(fixed):.1f}%"}
    if pipe.ood is not None:
        flags = pipe.ood.flag([" ".join(t) for t, _ in fixed])
        row["flagged (clean) = FPR"] = _rate(int(flags.sum()), len(flags))
    else:
        row["flagged (clean) = FPR"] = "0 (no flag)"
    _, cert = ibp.certify(pipe.model, pipe.vocab, table, [t for t, _ in fixed], labels, max_len=pipe.max_tokens)
    row["verified accuracy (synonyms)"] = _rate(int(cert.sum()), len(cert))
    accept = (lambda t: not pipe.flagged(t)) if pipe.ood is not None else None
    n = len(token_lists) if n_attack is None else min(n_attack, len(token_lists))
    results = {}
    for kind, cand in candidates.items():
        results[kind] = attack_many(pipe.predict_tokens, token_lists[:n], labels[:n].tolist(), cand, budget, accept,
                                    progress, desc=f"{name}: {kind}")
        row[f"{kind} attack success"] = _rate(*success_rate(results[kind]))
    row["seconds"] = round(time.perf_counter() - start, 1)
    return row, results

