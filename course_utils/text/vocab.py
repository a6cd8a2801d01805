"""Tokenizer and vocabulary for short English texts (rt-polarity is already lower-cased and tokenised).

``tokenize(text)`` -> list of tokens; ``Vocab.build(texts)``; ``vocab.encode(token_lists)`` -> ids
(B, L) int64 with ``PAD`` = 0 and ``UNK`` = 1, and a mask (B, L) bool of real tokens.
"""
from __future__ import annotations

import re
from collections import Counter

import torch

TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|'[a-z]+|[^\sa-z0-9]")
PAD, UNK = "<pad>", "<unk>"


def tokenize(text: str) -> list[str]:
    """Lower-case and split into words, clitics (``n't``, ``'s``) and single punctuation marks."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    return TOKEN_RE.findall(text.lower())


class Vocab:
    """Word <-> id map. Id 0 is padding, id 1 the unknown word; the rest by frequency, then alphabet."""

    def __init__(self, words):
        self.itos = [PAD, UNK] + [w for w in words if w not in (PAD, UNK)]
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def build(cls, texts, min_freq: int = 1, max_size: int | None = None) -> "Vocab":
        """Vocabulary of the words seen at least ``min_freq`` times in ``texts`` (strings or token lists)."""
        counts = Counter(t for text in texts for t in (tokenize(text) if isinstance(text, str) else text))
        words = sorted((w for w, c in counts.items() if c >= min_freq), key=lambda w: (-counts[w], w))
        return cls(words[:max_size] if max_size else words)

    def __len__(self):
        return len(self.itos)

    def __contains__(self, word):
        return word in self.stoi

    def id(self, word: str) -> int:
        return self.stoi.get(word, 1)

    def encode(self, token_lists, max_len: int = 64):
        """ids (B, L) int64 (0 = padding, 1 = unknown), mask (B, L) bool; L = min(longest, max_len)."""
        token_lists = [tokenize(t) if isinstance(t, str) else list(t) for t in token_lists]
        length = max(1, min(max_len, max((len(t) for t in token_lists), default=1)))
        ids = torch.zeros(len(token_lists), length, dtype=torch.int64)
        for i, tokens in enumerate(token_lists):
            row = [self.id(w) for w in tokens[:length]]
            ids[i, :len(row)] = torch.tensor(row, dtype=torch.int64)
        return ids, ids != 0
