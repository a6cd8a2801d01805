"""The defended sentiment API as one function: text in -> label, confidence, flags, certified.

``DefendedPipeline(model, vocab, spell=..., ood=..., table=..., monitor=...)``; each layer is
optional, so the same class is the plain model (no layers), the sanitized model, the certified one,
or all of them. ``pipeline(text)`` validates the input (a ``ValueError`` for non-text, empty or
over-long input), repairs typos (layer 1), classifies, flags out-of-distribution text (layer 1),
certifies the prediction against every allowed synonym substitution (layer 2) and records the
request (layer 3). ``predict_tokens`` is the black box an (adaptive) attacker queries.
A web service wraps it directly, e.g. FastAPI: ``@app.post("/predict") def f(q: Q): return pipe(q.text)``.
"""
from __future__ import annotations

import torch

from . import ibp
from .model import predict_proba
from .vocab import tokenize


class DefendedPipeline:
    """text -> {"label", "confidence", "flags", "certified", "tokens"}; see the module docstring."""

    def __init__(self, model, vocab, classes=("negative", "positive"), spell=None, ood=None, table=None,
                 monitor=None, max_chars: int = 1000, max_tokens: int = 64):
        self.model, self.vocab, self.classes = model, vocab, tuple(classes)
        self.spell, self.ood, self.table, self.monitor = spell, ood, table, monitor
        self.max_chars, self.max_tokens = max_chars, max_tokens

    def validate(self, text) -> list[str]:
        """Tokens of ``text``, or a ValueError saying what is wrong with it."""
        if not isinstance(text, str):
            raise ValueError(f"text must be a str, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("text is empty: send at least one word")
        if len(text) > self.max_chars:
            raise ValueError(f"text has {len(text)} characters, more than the limit of {self.max_chars}")
        tokens = tokenize(text)
        if not tokens:
            raise ValueError("text has no words the model can read")
        if len(tokens) > self.max_tokens:
            raise ValueError(f"text has {len(tokens)} tokens, more than the limit of {self.max_tokens}")
        return tokens

    def sanitize(self, tokens):
        return self.spell(tokens) if self.spell is not None else (list(tokens), 0)

    def predict_tokens(self, token_lists) -> torch.Tensor:
        """Probabilities (N, C) after the spell-checker: the black box an attacker queries."""
        fixed = [self.sanitize(t)[0] for t in token_lists]
        return predict_proba(self.model, self.vocab, fixed, max_len=self.max_tokens)

    def flagged(self, tokens) -> bool:
        """Whether the out-of-distribution check flags these (already tokenised) words."""
        return self.ood is not None and bool(self.ood.flag([" ".join(self.sanitize(tokens)[0])])[0])

    def __call__(self, text: str) -> dict:
        tokens = self.validate(text)
        fixed, n_fixed = self.sanitize(tokens)
        p = predict_proba(self.model, self.vocab, [fixed], max_len=self.max_tokens)[0]
        label = int(p.argmax())
        flags = ["sanitized"] if n_fixed else []
        if self.ood is not None and bool(self.ood.flag([" ".join(fixed)])[0]):
            flags.append("out_of_distribution")
        certified = False
        if self.table is not None:
            certified = bool(ibp.certify(self.model, self.vocab, self.table, [fixed], mode="vertex", max_len=self.max_tokens)[1][0])
        result = {"label": self.classes[label], "confidence": float(p[label]), "flags": flags,
                  "certified": certified, "tokens": fixed}
        if self.monitor is not None:
            self.monitor.record(text, result)
        return result
