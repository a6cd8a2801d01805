"""Adversarial text: character typos, WordNet synonym swaps, and a greedy search under an edit budget.

Threat model (one per attack, stated next to every number): the attacker rewrites at most
``budget`` words of a sentence, each word at most once, each into one of its candidates:

- ``typo``: one keyboard typo of a word of >= 3 letters: adjacent swap, deletion, insertion, or a
  QWERTY neighbour (as in Pruthi et al. 2019, "Combating adversarial misspellings");
- ``synonym``: a WordNet synonym in the model's vocabulary, S(w) of Jia et al. (2019) / Alzantot et al. (2018);
- ``both``: either.

``greedy_attack`` queries a black-box ``predict(token_lists) -> probs (N, C)`` (a model, or a whole
defended pipeline: that is the adaptive attacker), each step applies the single edit that lowers the
true-class probability most, and stops at the first accepted label flip (Ebrahimi et al. 2018 style).
"""
from __future__ import annotations

import random
import string
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..validation import check_nonnegative

KEYBOARD_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
KINDS = ("typo", "synonym", "both")


def _neighbours():
    pos = {c: (r, i) for r, row in enumerate(KEYBOARD_ROWS) for i, c in enumerate(row)}
    return {c: "".join(d for d, (r2, i2) in pos.items() if d != c and abs(r - r2) <= 1 and abs(i - i2) <= 1)
            for c, (r, i) in pos.items()}


KEYBOARD_NEIGHBOURS = _neighbours()


def swap_typos(word: str) -> list[str]:
    """Every word made by swapping two adjacent characters, in position order, without repeats or ``word``."""
    out = []
    for i in range(len(word) - 1):
        w = word[:i] + word[i + 1] + word[i] + word[i + 2:]
        if w != word and w not in out:
            out.append(w)
    return out


def delete_typos(word: str) -> list[str]:
    """Every word with one character deleted (distinct, in position order)."""
    return list(dict.fromkeys(word[:i] + word[i + 1:] for i in range(len(word))))


def keyboard_typos(word: str) -> list[str]:
    """Every word with one letter replaced by a QWERTY neighbour."""
    return list(dict.fromkeys(word[:i] + n + word[i + 1:] for i, c in enumerate(word) for n in KEYBOARD_NEIGHBOURS.get(c, "")))


def insert_typos(word: str) -> list[str]:
    """Every word with one lower-case letter inserted."""
    return list(dict.fromkeys(word[:i] + c + word[i:] for i in range(len(word) + 1) for c in string.ascii_lowercase))


def typo_candidates(word: str, per_kind: int = 1, seed: int = 0) -> list[str]:
    """Up to ``per_kind`` seeded typos of each kind for an alphabetic word of >= 3 letters, else []."""
    if len(word) < 3 or not word.isalpha():
        return []
    rng = random.Random(f"{seed}:{word}")  # str seeds are deterministic across runs
    out = []
    for make in (swap_typos, delete_typos, insert_typos, keyboard_typos):
        options = [w for w in make(word) if w != word and w not in out]
        out += rng.sample(options, min(per_kind, len(options)))
    return out


def make_candidates(kind: str, synonyms: dict | None = None, typos_per_kind: int = 1, seed: int = 0):
    """candidates(word) -> list of replacements for the threat model ``kind`` in ``KINDS``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if kind != "typo" and synonyms is None:
        raise ValueError("synonym attacks need a synonyms table {word: [synonyms]} (wordnet.restrict_synonyms)")

    def candidates(word):
        out = list(synonyms.get(word, [])) if kind != "typo" else []
        return out + (typo_candidates(word, typos_per_kind, seed) if kind != "synonym" else [])
    return candidates


@dataclass
class AttackResult:
    """One attacked sentence: the final tokens, whether the label flipped, words edited, model queries."""

    tokens: list
    success: bool
    edits: int
    queries: int
    clean_correct: bool = True


def greedy_attack(predict, tokens, label: int, candidates, budget: int = 3, accept=None) -> AttackResult:
    """Greedy word-by-word search: at most ``budget`` positions edited, each once.

    predict: list of token lists -> probs (N, C); candidates: word -> list of replacement words;
    accept: optional tokens -> bool, e.g. "not flagged by the defense": a flip it rejects is not a success.
    """
    check_nonnegative(budget, "budget")
    current, changed = list(tokens), set()
    p = predict([current])
    if int(p[0].argmax()) != label:
        return AttackResult(current, False, 0, 1, clean_correct=False)
    queries = 1
    options_at = {i: candidates(w) for i, w in enumerate(tokens)}
    for _ in range(int(budget)):
        options = [(i, c) for i, cs in options_at.items() if i not in changed for c in cs]
        if not options:
            break
        texts = [current[:i] + [c] + current[i + 1:] for i, c in options]
        probs = predict(texts)
        queries += len(texts)
        order = torch.argsort(probs[:, label]).tolist()  # most damaging first
        for k in order:
            if int(probs[k].argmax()) == label:
                break
            if accept is None or accept(texts[k]):
                return AttackResult(texts[k], True, len(changed) + 1, queries)
        i, c = options[order[0]]
        current[i] = c
        changed.add(i)
    return AttackResult(current, False, len(changed), queries)


def attack_many(predict, token_lists, labels, candidates, budget: int = 3, accept=None, progress=True, desc="attack"):
    """``greedy_attack`` on every sentence; returns the list of ``AttackResult``."""
    labels = [int(y) for y in labels]
    return [greedy_attack(predict, t, y, candidates, budget, accept)
            for t, y in tqdm(list(zip(token_lists, labels)), desc=desc, disable=not progress, leave=False)]


def success_rate(results) -> tuple[int, int]:
    """(successful attacks, sentences the system got right before the attack): rate = k / n."""
    n = sum(r.clean_correct for r in results)
    return sum(r.success for r in results), n
