"""Word-substitution IBP and the defended pipeline: bounds contain the logits of every enumerated
substitution, certificates are never broken by the attack, the pipeline rejects bad input clearly."""
import itertools

import pytest
import torch

from course_utils.text import attacks, ibp
from course_utils.text.model import BagOfWordsClassifier, predict_proba, train_text_model
from course_utils.text.monitoring import RequestMonitor
from course_utils.text.pipeline import DefendedPipeline
from course_utils.text.vocab import Vocab

WORDS = "good great fine bad awful dull film movie picture plot story tale".split()
SYNONYMS = {"good": ["great", "fine"], "great": ["good"], "bad": ["awful", "dull"], "film": ["movie", "picture"],
            "plot": ["story", "tale"], "dull": ["bad"]}


def _setup(seed=0, hidden=8):
    torch.manual_seed(seed)
    vocab = Vocab(WORDS)
    model = BagOfWordsClassifier(len(vocab), dim=6, hidden=hidden).eval()
    return vocab, model, ibp.substitution_table(vocab, SYNONYMS)


@pytest.mark.parametrize("mode", ibp.MODES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bounds_contain_every_substitution(mode, seed):
    vocab, model, table = _setup(seed)
    sentences = [["good", "film", "plot"], ["bad", "movie", "dull"], ["great", "tale"]]
    ids, mask = vocab.encode(sentences)
    with torch.no_grad():
        lo, hi = ibp.logit_bounds(model, ids, mask, table[ids], 1.0, mode)
    for b, sent in enumerate(sentences):
        options = [[w] + SYNONYMS.get(w, []) for w in sent]
        combos = [list(c) for c in itertools.product(*options)]
        assert len(combos) > 1
        i, m = vocab.encode(combos)
        with torch.no_grad():
            z = model(i, m)
        assert (z >= lo[b] - 1e-5).all() and (z <= hi[b] + 1e-5).all()


def test_vertex_never_looser_than_box_and_eps_zero_is_exact():
    vocab, model, table = _setup(3)
    ids, mask = vocab.encode([["good", "film", "plot", "bad"]])
    with torch.no_grad():
        blo, bhi = ibp.logit_bounds(model, ids, mask, table[ids], 1.0, "box")
        vlo, vhi = ibp.logit_bounds(model, ids, mask, table[ids], 1.0, "vertex")
        assert (vlo >= blo - 1e-5).all() and (vhi <= bhi + 1e-5).all()
        for mode in ibp.MODES:
            lo, hi = ibp.logit_bounds(model, ids, mask, table[ids], 0.0, mode)
            z = model(ids, mask)
            assert torch.allclose(lo, z, atol=1e-5) and torch.allclose(hi, z, atol=1e-5)
    with pytest.raises(ValueError):
        ibp.logit_bounds(model, ids, mask, table[ids], 1.0, "zonotope")


def test_is_certified_definition():
    lo = torch.tensor([[1.0, -1.0], [0.0, 0.5]])
    hi = torch.tensor([[2.0, 0.5], [1.0, 2.0]])
    assert ibp.is_certified(lo, hi, torch.tensor([0, 1])).tolist() == [True, False]


TEXTS = [["good", "film"], ["great", "plot"], ["bad", "movie"], ["awful", "tale"], ["fine", "story"], ["dull", "picture"]] * 8
LABELS = [1, 1, 0, 0, 1, 0] * 8


@pytest.fixture(scope="module")
def certified_model():
    vocab, _, table = _setup(0)
    torch.manual_seed(0)
    model = BagOfWordsClassifier(len(vocab), dim=6, hidden=8)
    history = train_text_model(model, vocab, TEXTS, LABELS, epochs=12, lr=1e-2, batch_size=8, progress=False,
                               loss_fn=ibp.make_certified_loss(table))
    return vocab, model, table, history


def test_certified_training_runs_and_certifies(certified_model):
    vocab, model, table, history = certified_model
    assert all(h == h for h in history)  # finite
    _, cert = ibp.certify(model, vocab, table, TEXTS, LABELS)
    assert cert.float().mean() > 0.5


def test_certificates_never_broken_by_the_attack(certified_model):
    vocab, model, table, _ = certified_model
    sentences = [list(c) for c in itertools.product(["good", "bad", "dull", "film"], ["film", "plot", "good"], ["great", "tale", "bad"])]
    pred, cert = ibp.certify(model, vocab, table, sentences)
    assert cert.any()
    cand = attacks.make_candidates("synonym", SYNONYMS)
    predict = lambda t: predict_proba(model, vocab, t)  # noqa: E731
    for sent, p, c in zip(sentences, pred.tolist(), cert.tolist()):
        r = attacks.greedy_attack(predict, sent, p, cand, budget=3)
        assert not (c and r.success)


def _pipeline(**kw):
    vocab, model, table = _setup(0)
    return DefendedPipeline(model, vocab, table=table, max_chars=60, max_tokens=8, **kw)


@pytest.mark.parametrize("bad", [None, 3, b"good film", ["good"], "", "   \n", "x" * 61, "a " * 9])
def test_pipeline_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        _pipeline()(bad)


def test_pipeline_output_and_monitoring():
    monitor = RequestMonitor()
    pipe = _pipeline(monitor=monitor)
    out = pipe("A good film!")
    assert set(out) == {"label", "confidence", "flags", "certified", "tokens"}
    assert out["label"] in ("negative", "positive") and 0.5 <= out["confidence"] <= 1 and isinstance(out["certified"], bool)
    monitor.record("x", {"label": "positive", "confidence": 0.9, "certified": False, "flags": ["sanitized"]})
    assert monitor.value(monitor.requests) == 2 and monitor.value(monitor.sanitized) == 1
    assert monitor.value(monitor.flagged, flag="sanitized") == 1
    assert "sentiment_requests_total 2.0" in monitor.exposition()
    assert monitor.alerts(0.4, window=2) == [1]
    assert len(monitor.log) == 2 and "text" not in monitor.log[0]


def test_ood_detector_with_bow_encoder():
    from course_utils.text.sanitize import OODDetector, bow_encoder

    vocab, model, _ = _setup(0)
    det = OODDetector(bow_encoder(model, vocab), ["good film", "bad plot", "great movie"], k=1)
    with pytest.raises(ValueError):
        det.flag(["good film"])
    det.fit_threshold(["good film", "bad plot", "great movie", "fine story"], fpr=0.25)
    assert det.score(["good film"])[0] == pytest.approx(1.0, abs=1e-5)
    assert det.flag(["good film"]).tolist() == [False]
