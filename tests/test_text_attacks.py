"""Text attacks, WordNet loading, sanitizer and data: generators respect their budgets, the
sanitizer repairs known typos, the WordNet loader explains how to install what is missing."""
import pytest
import torch

from course_utils.text import attacks, wordnet
from course_utils.text.vocab import Vocab, tokenize


def test_tokenize_and_vocab():
    assert tokenize("It isn't bad, it's GREAT!") == ["it", "isn't", "bad", ",", "it's", "great", "!"]
    v = Vocab.build(["a good movie", "a bad movie", "a movie"])
    assert v.itos[:4] == ["<pad>", "<unk>", "a", "movie"]
    ids, mask = v.encode([["a", "good"], ["zzz"]])
    assert ids.tolist() == [[2, v.id("good")], [1, 0]] and mask.tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError):
        tokenize(3)


@pytest.mark.parametrize("word", ["movie", "boring", "ab", "see"])
def test_typo_generators(word):
    assert all(len(w) == len(word) and sorted(w) == sorted(word) and w != word for w in attacks.swap_typos(word))
    assert all(len(w) == len(word) - 1 for w in attacks.delete_typos(word))
    assert all(len(w) == len(word) + 1 for w in attacks.insert_typos(word))
    for w in attacks.keyboard_typos(word):
        diff = [(a, b) for a, b in zip(word, w) if a != b]
        assert len(diff) == 1 and diff[0][1] in attacks.KEYBOARD_NEIGHBOURS[diff[0][0]]
    assert attacks.swap_typos("abc") == ["bac", "acb"]


def test_typo_candidates_budget_and_seed():
    for per_kind in (1, 2, 3):
        c = attacks.typo_candidates("terrible", per_kind, seed=1)
        assert len(c) <= 4 * per_kind and len(set(c)) == len(c) and "terrible" not in c
    assert attacks.typo_candidates("terrible", 2, 1) == attacks.typo_candidates("terrible", 2, 1)
    assert attacks.typo_candidates("ok", 2) == [] and attacks.typo_candidates("n't", 2) == []


def _toy_predict(token_lists):
    """P(positive) rises with 'good'/'great', falls with 'bad'/'dull'."""
    score = torch.tensor([sum({"good": 1.0, "great": 1.0, "bad": -1.5, "dull": -1.5}.get(w, 0.0) for w in t)
                          for t in token_lists])
    return torch.stack([torch.sigmoid(-score), torch.sigmoid(score)], 1)


def test_greedy_attack_respects_budget_and_candidates():
    tokens = "a good great good film".split()
    table = {"good": ["bad", "fine"], "great": ["dull"], "film": ["movie"]}
    cand = attacks.make_candidates("synonym", table)
    for budget in (0, 1, 2, 3):
        r = attacks.greedy_attack(_toy_predict, tokens, 1, cand, budget)
        changed = [i for i, (a, b) in enumerate(zip(tokens, r.tokens)) if a != b]
        assert len(changed) == r.edits <= budget
        assert all(r.tokens[i] in table[tokens[i]] for i in changed)
        assert r.success == (int(_toy_predict([r.tokens])[0].argmax()) != 1)
    assert not attacks.greedy_attack(_toy_predict, tokens, 1, cand, 1).success
    assert attacks.greedy_attack(_toy_predict, tokens, 1, cand, 2).success  # 3 - 1.5 - 1.5 = 0 ... then flip
    rejected = attacks.greedy_attack(_toy_predict, tokens, 1, cand, 3, accept=lambda t: False)
    assert not rejected.success and rejected.edits <= 3
    assert not attacks.greedy_attack(_toy_predict, tokens, 0, cand, 3).clean_correct


def test_make_candidates_errors():
    with pytest.raises(ValueError):
        attacks.make_candidates("paraphrase")
    with pytest.raises(ValueError):
        attacks.make_candidates("synonym", None)


DATA_LINE = "00001740 03 n 03 good 0 goodness 0 commodity(a) 1 000 | a gloss\n"


def test_wordnet_parser_and_loader(tmp_path, monkeypatch):
    assert wordnet.parse_data_file(["  1 licence text", DATA_LINE]) == [["good", "goodness", "commodity"]]
    for f in wordnet.POS_FILES:
        (tmp_path / f).write_text(DATA_LINE if f == "data.adj" else "  header\n")
    syn = wordnet.load_wordnet_synonyms(tmp_path)
    assert syn["good"] == {"goodness", "commodity"} and "good" not in syn["good"]
    v = Vocab(["good", "goodness", "the"])
    assert wordnet.restrict_synonyms(syn, v) == {"good": ["goodness"], "goodness": ["good"]}


def test_wordnet_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(wordnet, "SYSTEM_DIRS", ())
    monkeypatch.delenv("COURSE_WORDNET_DIR", raising=False)
    try:
        import nltk
        monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    except ImportError:
        pass
    with pytest.raises(FileNotFoundError, match="wordnet-base.*nltk.download"):
        wordnet.load_wordnet_synonyms(tmp_path / "nowhere", download=False)


def test_spell_repair_fixes_known_typos():
    pytest.importorskip("spellchecker")
    from course_utils.text.sanitize import SpellRepair

    fixed, n = SpellRepair()("this film was terrrible and borign , not beatiful actng , isn't it".split())
    assert fixed == "this film was terrible and boring , not beautiful acting , isn't it".split() and n == 4
    kept, n = SpellRepair(keep={"moive"})(["moive"])
    assert kept == ["moive"] and n == 0


def test_ood_detector_threshold_keeps_the_false_positive_rate_on_held_out_texts():
    from course_utils.text.sanitize import OODDetector

    vecs = torch.randn(7000, 8, generator=torch.Generator().manual_seed(0))
    det = OODDetector(lambda texts: vecs[[int(t) for t in texts]], [str(i) for i in range(1000)], k=5)
    tau = det.fit_threshold([str(i) for i in range(1000, 3000)], fpr=0.1)  # low similarity = flagged
    held_out = [str(i) for i in range(3000, 7000)]
    assert abs(det.flag(held_out).float().mean().item() - 0.1) < 0.02
    assert (det.score(held_out) < tau).equal(det.flag(held_out))


def test_rt_polarity_split():
    from course_utils.config import data_dir
    from course_utils.data import load_dataset

    if not (data_dir() / "rt-polarity" / "rt-polarity.pos").exists():
        pytest.skip("rt-polarity not in COURSE_DATA_DIR")
    parts = {s: load_dataset("rt-polarity", s, download=False) for s in ("train", "validation", "test")}
    assert [len(p) for p in parts.values()] == [8529, 1066, 1067]
    assert parts["test"].classes == ("negative", "positive") and set(parts["test"].targets.tolist()) == {0, 1}
    assert parts["test"].texts == load_dataset("rt-polarity", "test", download=False).texts  # seeded
    with pytest.raises(ValueError):
        load_dataset("rt-polarity", "val")


def test_similarity_threshold_check_accepts_the_rule_and_rejects_its_mutants():
    import math

    from course_utils.checks import text as text_checks

    def right(s, fpr):
        s = torch.as_tensor(s, dtype=torch.float64).sort().values
        return float(s[math.floor(fpr * len(s) + 1e-9)])

    text_checks.check_similarity_threshold(right)
    for mutant in (lambda s, f: float(torch.quantile(s, f)),  # interpolated quantile, not the order statistic
                   lambda s, f: float(s.sort(descending=True).values[math.floor(f * len(s))]),  # wrong side
                   lambda s, f: float(s.sort().values[math.floor(f * len(s)) - 1])):  # off by one
        with pytest.raises(AssertionError):
            text_checks.check_similarity_threshold(mutant)
