"""Unit tests for notebook 01's and 09's packages: threats (model, examples, demos), interview,
and the threat-model check. Fast: the only training is a few steps of a tiny model."""
import dataclasses

import pytest
import torch
from torch import nn

from course_utils import interview, threats
from course_utils.checks import threats as threat_checks
from course_utils.threats import (STRIDE_CATEGORIES, Attacker, Threat, ThreatModel, stride_category,
                                  validate_threat_model)


def complete_model() -> ThreatModel:
    threats = [Threat(f"threat {c}", c, f"how {c} happens", "evasion" if i == 0 else "extraction" if i == 1 else "conventional",
                      "model", "medium", "high", f"mitigate {c}", f"test {c}") for i, c in enumerate(STRIDE_CATEGORIES)]
    return ThreatModel("API", "an API", ["model"], ["HTTP"], [Attacker("a", "fool it", "black-box", ["queries"])], threats)


# ---- threats: validation ------------------------------------------------------------------
def test_complete_model_passes():
    tm = complete_model()
    assert tm.problems() == [] and tm.problems(require_threat_per_category=True) == []
    assert tm.validate() is tm


@pytest.mark.parametrize("category", STRIDE_CATEGORIES)
def test_missing_stride_category_is_named(category):
    tm = complete_model()
    tm.threats = [t for t in tm.threats if t.stride != category]
    problems = tm.problems()
    assert len(problems) == 1 and f"'{category}'" in problems[0] and "not considered" in problems[0]
    with pytest.raises(ValueError, match=category):
        tm.validate()


def test_not_applicable_with_reason_counts_as_considered_but_not_in_strict_mode():
    tm = complete_model()
    tm.threats = [t for t in tm.threats if t.stride != "Repudiation"]
    tm = dataclasses.replace(tm, not_applicable={"R": "logged elsewhere"})
    assert tm.not_applicable == {"Repudiation": "logged elsewhere"}
    assert tm.problems() == []
    tm.not_applicable = {"r": "set later, still understood"}
    assert tm.problems() == []
    assert any("'Repudiation'" in p and "no threat" in p for p in tm.problems(require_threat_per_category=True))
    tm.not_applicable = {"Repudiation": "TODO"}  # a placeholder is not a reason
    assert any("'Repudiation'" in p for p in tm.problems())
    tm.not_applicable = {"Reputation": "typo"}
    assert any("unknown STRIDE category 'Reputation'" in p for p in tm.problems())


@pytest.mark.parametrize("field,word", [("mitigation", "no mitigation"), ("test", "no test"), ("description", "no description")])
@pytest.mark.parametrize("value", ["", "TODO", "  tbd. "])
def test_missing_mitigation_or_test_is_named(field, word, value):
    tm = complete_model()
    tm.threats[2] = dataclasses.replace(tm.threats[2], **{field: value})
    problems = tm.problems()
    assert len(problems) == 1
    assert tm.threats[2].name in problems[0] and word in problems[0]


def test_empty_model_lists_everything():
    problems = validate_threat_model(ThreatModel(""))
    text = "\n".join(problems)
    for word in ("no name", "asset", "entry point", "attacker", "no threats", *STRIDE_CATEGORIES):
        assert word in text
    assert len(problems) == 5 + len(STRIDE_CATEGORIES)


def test_duplicate_names_flagged():
    tm = complete_model()
    tm.add(dataclasses.replace(tm.threats[0]))
    assert any("used twice" in p for p in tm.problems())


def test_bad_fields_raise_clear_errors():
    assert stride_category("i") == "Information disclosure" and stride_category("denial of SERVICE") == "Denial of service"
    with pytest.raises(ValueError, match="stride must be one of"):
        Threat("x", "Spoofin")
    with pytest.raises(ValueError, match="likelihood must be one of"):
        Threat("x", "S", likelihood="very high")
    with pytest.raises(ValueError, match="attack must be one of"):
        Threat("x", "S", attack="hacking")
    with pytest.raises(ValueError, match="knowledge"):
        Attacker("a", "b", knowledge="omniscient")
    with pytest.raises(ValueError, match="Threat objects"):
        ThreatModel("x", threats=["a string"])
    with pytest.raises(ValueError, match="ThreatModel"):
        validate_threat_model("not a model")


def test_risk_and_tables():
    assert Threat("a", "T", likelihood="low", impact="low").risk == 1
    assert Threat("a", "T", likelihood="high", impact="high").risk == 9
    tm = complete_model()
    tm.add(Threat("worse", "Spoofing", "d", likelihood="high", impact="high", mitigation="m", test="t"))
    df = tm.table()
    assert list(df["STRIDE"].unique()) == list(STRIDE_CATEGORIES)  # STRIDE order
    assert df.iloc[0]["threat"] == "worse"  # highest risk first within a category
    st = tm.stride_table()
    assert list(st["status"]) == ["covered"] * 6 and st.loc[0, "threats"] == 2
    html = tm.to_html()
    assert "<table" in html and "worse" in html and "<table" in tm._repr_html_()
    tm.threats = [t for t in tm.threats if t.stride != "Spoofing"]
    assert tm.stride_table().loc[0, "status"] == "MISSING" and tm.stride_table().loc[0, "threats"] == 0


@pytest.mark.parametrize("name", sorted(threats.EXAMPLES))
def test_worked_examples_are_complete(name):
    tm = threats.EXAMPLES[name]()
    assert tm.problems() == []
    assert len(tm.threats) >= 6


# ---- the exercise check must pass a complete model and fail otherwise ------------------------
def test_check_passes_complete_and_fails_incomplete(capsys):
    threat_checks.check_threat_model(complete_model)
    assert "PASSED" in capsys.readouterr().out

    def not_written():
        raise NotImplementedError()

    def missing_test():
        tm = complete_model()
        tm.threats[0].test = ""
        return tm

    def no_extraction():
        tm = complete_model()
        tm.threats[1].attack = "inference"
        return tm

    for fn in (not_written, missing_test, no_extraction, lambda: "a string"):
        with pytest.raises(AssertionError):
            threat_checks.check_threat_model(fn)
    assert "no test" in capsys.readouterr().out


# ---- threats.demos ----------------------------------------------------------------------------
def tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 3))


def blobs(n=96, seed=0):
    """Three classes of 8x8 images: bright left, middle or right third."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 3
    x = torch.rand(n, 1, 8, 8, generator=g) * 0.2
    for c in range(3):
        x[y == c, :, :, c * 2 + 1:c * 2 + 3] += 0.7
    return x.clamp(0, 1), y


def test_stamp_trigger_and_poison():
    x, y = blobs()
    xs = threats.stamp_trigger(x, size=2, margin=1)
    assert torch.all(xs[..., 5:7, 5:7] == 1) and torch.equal(xs[..., :5, :], x[..., :5, :])
    assert torch.equal(xs[..., 7, :], x[..., 7, :])  # margin row untouched
    xp, yp, idx = threats.poison(x, y, 0.25, target=0, generator=torch.Generator().manual_seed(0), size=2)
    assert len(idx) == 24 and torch.all(y[idx] != 0) and torch.all(yp[idx] == 0)
    clean = torch.ones(len(x), dtype=torch.bool)
    clean[idx] = False
    assert torch.equal(xp[clean], x[clean]) and torch.equal(yp[clean], y[clean])
    assert torch.all(xp[idx][..., 5:7, 5:7] == 1)
    assert len(threats.poison(x, y, 0.0, 0)[2]) == 0
    with pytest.raises(ValueError, match="fraction"):
        threats.poison(x, y, 1.5, 0)
    with pytest.raises(ValueError, match="only 64"):
        threats.poison(x, y, 0.9, 0)
    with pytest.raises(ValueError, match="does not fit"):
        threats.stamp_trigger(x, size=8)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        threats.stamp_trigger(x * 2)


def test_prediction_api_budget_and_agreement():
    x, y = blobs()
    model = tiny_model()
    api = threats.PredictionAPI(model, budget=50)
    labels = api(x[:30])
    assert labels.shape == (30,) and api.queries == 30 and api.remaining == 20
    assert torch.equal(labels, threats.predict(model, x[:30]))
    with pytest.raises(PermissionError, match="budget"):
        api(x[:21])
    assert api.queries == 30
    same = threats.agreement(model, model, x)
    assert same.accuracy == 1.0 and same.n == len(x)
    assert threats.agreement(model, tiny_model(seed=1), x).accuracy < 1.0


def test_extraction_copies_a_trained_victim(one_thread):
    x, y = blobs(192)
    torch.manual_seed(0)
    victim = threats.train_classifier(tiny_model(), x, y, epochs=30, batch_size=32, lr=1e-2, progress=False)
    assert (threats.predict(victim, x) == y).float().mean() > 0.95
    pool, test = blobs(192, seed=1)[0], blobs(96, seed=2)[0]
    api = threats.PredictionAPI(victim, budget=150)
    student = threats.extract_model(api, tiny_model(seed=3), pool, 150, epochs=1, min_steps=100, lr=1e-2,
                                         progress=False)
    assert api.queries == 150
    assert threats.agreement(victim, student, test).accuracy > 0.9
    with pytest.raises(ValueError, match="exceeds"):
        threats.extract_model(api, tiny_model(), pool, 1000)


def test_trigger_success_counts_only_non_target_images():
    x, y = blobs()

    class AlwaysZeroWithTrigger(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            triggered = (x[:, 0, 5:7, 5:7] == 1).flatten(1).all(1)
            return torch.stack([triggered.float(), 1 - triggered.float(), torch.zeros(len(x))], 1)

    res = threats.trigger_success(AlwaysZeroWithTrigger(), x, y, target=0, size=2)
    assert res.n == int((y != 0).sum()) and res.accuracy == 1.0
    res = threats.trigger_success(AlwaysZeroWithTrigger(), x, y, target=1, size=2)
    assert res.accuracy == 0.0


# ---- interview --------------------------------------------------------------------------
def test_question_bank():
    qs = interview.QUESTIONS
    assert len(qs) >= 25 and len({q.qid for q in qs}) == len(qs)
    assert all(q.question and q.strategy and len(q.answer) > 100 for q in qs)
    assert len(interview.AREAS) >= 10
    for phrase in ("5% clean accuracy", "bypass input sanitization", "Empirical versus certified", "being fooled",
                   "more than 70% accuracy under strong PGD"):
        assert any(phrase in q.question for q in qs), phrase
    assert len(interview.question_table()) == len(qs)
    assert interview.get("at-product").area == "adversarial training"
    with pytest.raises(ValueError, match="area"):
        interview.questions("cooking")
    with pytest.raises(ValueError, match="no question"):
        interview.get("nope")


def test_sample_is_seeded_and_distinct():
    a, b = interview.sample(8, seed=3), interview.sample(8, seed=3)
    assert a == b and len(set(a)) == 8
    assert all(q.area == "evaluation" for q in interview.sample(2, seed=0, area="evaluation"))
    with pytest.raises(ValueError, match="n must be"):
        interview.sample(0)


def test_widgets_reveal_and_quiz():
    q = interview.get("cd-when")
    w = interview.reveal(q)
    answer_panel, answer_button = w.children[3], w.children[1].children[1]
    assert answer_panel.layout.display == "none" and q.answer[:30] not in w.children[0].value
    answer_button.click()
    assert answer_panel.layout.display == "" and answer_button.description.startswith("Hide")
    answer_button.click()
    assert answer_panel.layout.display == "none"
    assert len(interview.bank_widget(interview.QUESTIONS[:3]).children) == 3

    quiz = interview.SelfQuiz(n=3, seed=1)
    first = quiz.current
    quiz._text.value = "my answer"
    html = quiz.reveal()
    assert "my answer" in html and first.answer[:40].replace("'", "&#x27;") in html
    assert quiz.answers[first.qid] == "my answer"
    assert quiz.next() is quiz.questions[1] and quiz._text.value == "" and quiz._feedback.value == ""
    quiz.next()
    assert quiz.next() is None and "Done" in quiz._feedback.value
