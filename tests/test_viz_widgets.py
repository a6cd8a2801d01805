"""Fast tests of course_utils.viz and course_utils.widgets (Agg backend, tiny seeded models)."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from course_utils import checks, viz, widgets# noqa: E402
from course_utils.attacks import lp_norm  # noqa: E402

CLASSES = [str(i) for i in range(10)]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()
    x = torch.rand(6, 1, 8, 8, generator=g)
    y = torch.randint(0, 10, (6,), generator=g)
    return model, x, y


def sweep(acc):
    return pd.DataFrame({"eps": [0.0, 0.1, 0.2], "accuracy": acc, "ci_low": [a - 0.05 for a in acc],
                         "ci_high": [a + 0.05 for a in acc]})


def test_show_images_grid_shape():
    fig = viz.show_images(torch.rand(10, 3, 8, 8), titles=[str(i) for i in range(10)], ncols=4)
    assert isinstance(fig, plt.Figure)
    assert len(fig.axes) == 12  # 3 rows x 4 columns
    assert fig.axes[9].get_title() == "9" and not fig.axes[10].images


@pytest.mark.parametrize("bad", [torch.rand(2, 8, 8), torch.rand(2, 2, 8, 8), torch.rand(2, 1, 8, 8) + 1])
def test_show_images_rejects_bad_images(bad):
    with pytest.raises(ValueError):
        viz.show_images(bad)


def test_adversarial_grid_rows_titles_and_colours(data):
    model, x, _ = data
    x_adv = torch.rand_like(x)
    fig = viz.adversarial_grid(model, x, x_adv, CLASSES, n=4)
    axes = fig.axes
    assert len(axes) == 12
    preds_clean = model(x[:4]).argmax(1)
    preds_adv = model(x_adv[:4]).argmax(1)
    for i in range(4):
        assert axes[i].get_title().startswith(CLASSES[preds_clean[i]])
        wrong = preds_adv[i] != preds_clean[i]
        assert (axes[4 + i].title.get_color() == "tab:red") == bool(wrong)
        assert "Linf" in axes[8 + i].get_title() and "L2" in axes[8 + i].get_title()
    y = preds_clean.clone()
    y[0] = (y[0] + 1) % 10  # clean prediction 0 is now wrong
    axes = viz.adversarial_grid(model, x, x_adv, CLASSES, n=4, y=torch.cat([y, torch.zeros(2, dtype=torch.long)])).axes
    assert axes[0].title.get_color() == "tab:red" and axes[1].title.get_color() == "black"
    with pytest.raises(ValueError):
        viz.adversarial_grid(model, x, x_adv[:3], CLASSES)
    with pytest.raises(ValueError):
        viz.adversarial_grid(model, x, x_adv, CLASSES[:5])


def test_perturbation_image_maps_zero_to_grey():
    delta = torch.zeros(1, 1, 2, 2)
    delta[0, 0, 0, 0] = 0.1
    img = viz.perturbation_image(delta)
    assert img.min() >= 0 and img.max() <= 1
    assert img[0, 0, 1, 1] == 0.5 and img[0, 0, 0, 0] == 1.0


def test_prediction_bars():
    ax = viz.prediction_bars(torch.softmax(torch.randn(10), 0), CLASSES, true=3)
    assert len(ax.patches) == 10
    assert "(true)" in ax.get_yticklabels()[3].get_text()
    with pytest.raises(ValueError):
        viz.prediction_bars(torch.ones(10) * 2, CLASSES)
    with pytest.raises(ValueError):
        viz.prediction_bars(torch.ones(9) / 9, CLASSES)


def test_plot_accuracy_vs_eps_single_and_dict():
    ax = viz.plot_accuracy_vs_eps(sweep([0.9, 0.5, 0.1]), title="t")
    assert len(ax.lines) == 1 and len(ax.collections) == 1 and ax.get_title() == "t"
    fig, ax2 = plt.subplots()
    out = viz.plot_accuracy_vs_eps({"FGSM": sweep([0.9, 0.6, 0.3]), "PGD": sweep([0.9, 0.3, 0.0])}, ax=ax2)
    assert out is ax2 and len(ax2.lines) == 2
    assert [t.get_text() for t in ax2.get_legend().get_texts()] == ["FGSM", "PGD"]
    with pytest.raises(ValueError):
        viz.plot_accuracy_vs_eps(pd.DataFrame({"eps": [0.1], "accuracy": [0.5]}))


def test_plot_lp_balls_shapes():
    ax = viz.plot_lp_balls(eps=2.0)
    balls = ax.lines[:3]
    l1, l2, linf = (line.get_xydata() for line in balls)
    assert abs(abs(l1).sum(1) - 2.0).max() < 1e-9  # the L1 sphere: |d1| + |d2| = eps
    assert abs((l2 ** 2).sum(1) ** 0.5 - 2.0).max() < 1e-9
    assert abs(abs(linf).max(1) - 2.0).max() < 1e-9
    with pytest.raises(ValueError):
        viz.plot_lp_balls(eps=-1)
    with pytest.raises(ValueError):
        viz.plot_lp_balls(norms=("l0",))


def test_plot_decision_boundary_2d():
    model = nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
        model.bias.zero_()
    ax = viz.plot_decision_boundary_2d(model, (-1, 1), (-1, 1), points=torch.zeros(3, 2), labels=torch.tensor([0, 1, 0]),
                                       resolution=50)
    assert ax.get_xlim() == (-1.0, 1.0) and len(ax.collections) >= 2
    with pytest.raises(ValueError):
        viz.plot_decision_boundary_2d(model, (1, -1), (-1, 1))
    with pytest.raises(ValueError):
        viz.plot_decision_boundary_2d(model, (-1, 1), (-1, 1), points=torch.zeros(3, 3))


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
@pytest.mark.parametrize("attack", ["fgsm", "pgd"])
def test_explorer_state_in_box_and_ball(data, norm, eps, attack):
    model, x, y = data
    s = widgets.explorer_state(model, x, y, 2, eps, 5, norm=norm, attack=attack)
    assert s["x_adv"].shape == x[2].shape
    assert s["x_adv"].min() >= 0 and s["x_adv"].max() <= 1
    assert lp_norm(s["perturbation"][None], norm).item() <= eps + 1e-6
    assert torch.allclose(s["x_adv"] - x[2], s["perturbation"])
    assert abs(s["probs_clean"].sum() - 1) < 1e-5 and s["probs_adv"].shape == (10,)
    assert s["pred_clean"] == int(model(x[2:3]).argmax()) and s["label"] == int(y[2])
    assert s["threat"].startswith(f"{attack.upper()} {norm} eps={eps:g}")


def test_explorer_state_pgd_raises_loss_and_is_reproducible(data):
    model, x, y = data
    a = widgets.explorer_state(model, x, y, 0, 0.3, 10)
    b = widgets.explorer_state(model, x, y, 0, 0.3, 10)
    assert torch.equal(a["x_adv"], b["x_adv"])
    assert a["probs_adv"][a["label"]] <= a["probs_clean"][a["label"]]
    zero = widgets.explorer_state(model, x, y, 0, 0.0, 10)
    assert torch.equal(zero["x_adv"], x[0])


@pytest.mark.parametrize("kwargs", [{"eps": -0.1}, {"index": 6}, {"steps": 0}, {"norm": "l1"}, {"attack": "cw"}])
def test_explorer_state_bad_input(data, kwargs):
    model, x, y = data
    args = {"index": 0, "eps": 0.1, "steps": 5, **kwargs}
    with pytest.raises(ValueError):
        widgets.explorer_state(model, x, y, **args)


def test_explorer_state_bad_images(data):
    model, x, y = data
    with pytest.raises(ValueError):
        widgets.explorer_state(model, x[0], y, 0, 0.1, 5)  # (C, H, W): no batch dimension
    with pytest.raises(ValueError):
        widgets.explorer_state(model, x * 2, y, 0, 0.1, 5)
    with pytest.raises(ValueError):
        widgets.explorer_state(model, x, y[:3], 0, 0.1, 5)


def test_attack_explorer_builds_and_updates(data):
    ipywidgets = pytest.importorskip("ipywidgets")
    model, x, y = data
    panel = widgets.attack_explorer(model, x, y, CLASSES, eps_max=0.3, eps_step=0.01, max_steps=20)
    assert isinstance(panel, ipywidgets.Widget)
    c = panel.controls
    assert c["index"].max == len(x) - 1 and c["eps"].max == 0.3 and c["steps"].max == 20
    c["attack"].value = "fgsm"
    assert c["steps"].disabled
    c["eps"].value = 0.2
    state = panel.update()
    assert lp_norm(state["perturbation"][None], "linf").item() <= 0.2 + 1e-6
    with pytest.raises(ValueError):
        widgets.attack_explorer(model, x, y, CLASSES, eps_max=-1)


def test_foundation_checks_can_fail():
    checks.foundations.check_perturbation_norms(checks.foundations.reference_perturbation_norms)
    with pytest.raises(AssertionError):
        checks.foundations.check_perturbation_norms(lambda x, a: ((a - x).flatten(1).abs().sum(1),) * 2)
    checks.foundations.check_worst_case_linear(lambda w, eps: eps * torch.sign(w))
    with pytest.raises(AssertionError):
        checks.foundations.check_worst_case_linear(lambda w, eps: eps * w / w.norm())
