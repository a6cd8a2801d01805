"""The RobustBench table of notebook 05 (issue 15, item 3) is well-formed, its check rejects malformed
entries, and the plot runs with the learner's models highlighted."""
import dataclasses

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from course_utils import evaluation, leaderboard  # noqa: E402


def test_entries_are_well_formed():
    leaderboard.validate()
    for e in leaderboard.CIFAR10_LINF:
        assert 0.0 <= e.autoattack <= e.clean <= 1.0
        assert e.source == f"RobustBench/robustbench@{leaderboard.COMMIT[:7]}:model_info/cifar10/Linf/{e.name}.json"
    assert len(leaderboard.COMMIT) == 40
    names = {e.name for e in leaderboard.CIFAR10_LINF}
    # the entries the notebook's answer leans on
    assert {"Bartoldson2024Adversarial_WRN-94-16", "Addepalli2022Efficient_RN18", "Wong2020Fast",
            "Wang2023Better_WRN-70-16", "Rice2020Overfitting"} <= names
    kinds = {leaderboard.data_kind(e) for e in leaderboard.CIFAR10_LINF}
    assert kinds == set(leaderboard.DATA_COLORS)


def test_table_is_sorted_in_percent_with_sources():
    df = leaderboard.table()
    assert list(df["AutoAttack %"]) == sorted(df["AutoAttack %"], reverse=True)
    assert df["clean %"].between(0, 100).all() and (df["AutoAttack %"] <= df["clean %"]).all()
    assert df["clean %"].max() > 1  # percent, not fractions
    assert df["source"].str.contains(leaderboard.COMMIT[:7]).all()
    assert "8/255" in df.attrs["threat model"]


BASE = leaderboard.CIFAR10_LINF[0]


@pytest.mark.parametrize("change, message", [
    (dict(clean=93.68), "fraction in \\[0, 1\\]"),  # percent where a fraction belongs
    (dict(autoattack=0.95), "above clean"),
    (dict(generated_images=0), "footnote says 300000000"),  # footnote's 300M not counted
    (dict(params=0), "positive int"),
    (dict(link=""), "link"),
    (dict(extra_real_data=True), "both extra real and generated"),
])
def test_validate_rejects_malformed_entries(change, message):
    with pytest.raises(ValueError, match=message):
        leaderboard.validate([dataclasses.replace(BASE, **change)])


def test_validate_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate"):
        leaderboard.validate([BASE, BASE])


def test_plot_runs_and_highlights_the_learner():
    clean, robust = evaluation.EvalResult(60, 100), evaluation.EvalResult(30, 100, threat="AutoAttack")
    ax = leaderboard.plot([("your model", clean, robust, 1_000_000)], target=0.70)
    labels = ax.get_legend_handles_labels()[1]
    assert any(label.startswith("your model") for label in labels)
    assert sum(label.startswith("RobustBench") for label in labels) == len(leaderboard.DATA_COLORS)
    assert ax.get_xlim()[0] <= clean.ci[0] and ax.get_ylim() == (0, 1)
    assert any(line.get_ydata()[0] == 0.70 for line in ax.get_lines())  # the requested level
    plt.close(ax.figure)


def _percent_figures(text):
    import re

    return [float(m) for m in re.findall(r"(\d+(?:\.\d+)?)%", text)]


def _stray_figures(text):
    """Percentages in text that are neither a table figure (exact or rounded) nor one of the other sourced numbers."""
    exact = {round(100 * v, 2) for e in leaderboard.CIFAR10_LINF for v in (e.clean, e.autoattack)}
    rounded = {round(v) for v in exact}
    other = {70: "the request", 46.06: "Wong et al., PGD-50 x 10 (locuslab/fast_adversarial README; notebook 05)",
             58: "Rice2020Overfitting.json 'reported'", 90: "Bartoldson et al. 2024, abstract: predicted plateau"}
    return [f for f in _percent_figures(text) if f not in exact and f not in rounded and f not in other]


def test_interview_answer_quotes_only_table_figures():
    """Every percentage in the 'at-seventy' answer is a table figure (exact or rounded) or one of the few
    other sourced numbers; a figure typed from memory fails."""
    from course_utils import interview

    answer = interview.get("at-seventy").answer
    assert len(_percent_figures(answer)) >= 10
    assert not _stray_figures(answer), f"figures without a source: {_stray_figures(answer)}"
    assert _stray_figures("WRN-94-16: 93.68% clean / 73.17% AutoAttack, about 75%") == [73.17, 75.0]  # typos are caught
