"""Interactive explorers (ipywidgets) for the attack lessons (notebooks 02 and 03).

``attack_explorer(model, x, y, classes)``: pick an image, move eps and the number of PGD steps,
choose FGSM or PGD, and watch the adversarial image, the perturbation and the prediction bars
update. All the computing is in the pure function ``explorer_state`` (tested without a browser);
the widget only draws its result. The attack is an ``attacks.AttackConfig`` (FGSM, or PGD with the
course's default step ``attacks.default_alpha``, a random start and a fixed seed, so moving a slider
back gives the same picture); its threat model is printed above the figure.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from . import attacks
from .validation import check_images, check_labels, check_nonnegative, check_norm, check_positive_int
from .viz import as_images, imshow, model_device, perturbation_image, predict_proba, prediction_bars

ATTACKS = ("fgsm", "pgd")
SEED = 0  # random start of PGD, fixed so the explorer is reproducible


def explorer_state(model, x, y, index: int, eps: float, steps: int, norm: str = "linf", attack: str = "pgd") -> dict:
    """Attack image ``index`` of ``x`` and return what the explorer shows.

    x: (N, C, H, W) in [0, 1]; y: (N,) labels; eps in pixel units (>= 0); steps: PGD steps (>= 1,
    ignored by FGSM); norm: "linf" or "l2"; attack: "fgsm" or "pgd". Returns a dict with
    x_adv (C, H, W) in [0, 1], perturbation = x_adv - x[index] (C, H, W) with norm <= eps,
    probs_clean / probs_adv (K,) softmax probabilities, pred_clean / pred_adv (int), label (int) and
    threat (the ``AttackConfig``'s threat-model string).
    Everything is returned on the CPU.
    """
    check_images(x)
    y = check_labels(y, x)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(x):
        raise ValueError(f"index must be an integer in [0, {len(x)}), got {index!r}")
    eps = check_nonnegative(eps, "eps")
    steps = check_positive_int(steps, "steps")
    norm = check_norm(norm)
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {ATTACKS}, got {attack!r}")
    device = model_device(model)
    xi, yi = x[index:index + 1].to(device), y[index:index + 1].to(device)
    cfg = attacks.AttackConfig(eps, steps=steps, norm=norm, kind=attack, generator=torch.Generator().manual_seed(SEED))
    x_adv = cfg(model, xi, yi).clone()
    probs = predict_proba(model, torch.cat([xi, x_adv]))
    x_adv, xi = x_adv[0].detach().cpu(), xi[0].detach().cpu()
    return {
        "x_adv": x_adv,
        "perturbation": x_adv - xi,
        "probs_clean": probs[0],
        "probs_adv": probs[1],
        "pred_clean": int(probs[0].argmax()),
        "pred_adv": int(probs[1].argmax()),
        "label": int(yi[0]),
        "threat": str(cfg),
    }


def explorer_figure(x_clean, state: dict, classes, norm: str = "linf"):
    """The explorer's picture: clean, adversarial, perturbation and the two prediction bars."""
    fig, axes = plt.subplots(1, 5, figsize=(14, 3), gridspec_kw={"width_ratios": [1, 1, 1, 1.3, 1.3]})
    delta = state["perturbation"]
    images = (x_clean, state["x_adv"], perturbation_image(delta[None])[0])
    d = delta.flatten()
    titles = [f"{name}: {classes[state['pred_' + key]]} ({100 * state['probs_' + key].max():.0f}%)"
              for name, key in (("clean", "clean"), ("adversarial", "adv"))]
    titles.append(f"perturbation (grey = 0)\nLinf {d.abs().max():.3f}  L2 {d.norm():.2f}")
    wrong = (state["pred_clean"] != state["label"], state["pred_adv"] != state["label"], False)
    for ax, img, title, bad in zip(axes[:3], images, titles, wrong):
        imshow(ax, as_images(img[None].clamp(0, 1))[0])
        ax.set_title(title, fontsize=9, color="tab:red" if bad else "black")
        ax.axis("off")
    prediction_bars(state["probs_clean"], classes, true=state["label"], ax=axes[3], title="clean")
    prediction_bars(state["probs_adv"], classes, true=state["label"], ax=axes[4], title="adversarial")
    fig.suptitle(state.get("threat", ""), fontsize=9)
    fig.tight_layout()
    return fig


def attack_explorer(model, x, y, classes, eps_max: float = 0.5, eps_step: float = 0.01, max_steps: int = 50,
                    norm: str = "linf"):
    """An ipywidgets panel: image index, eps, PGD steps and FGSM/PGD; redraws on every change.

    x: (N, C, H, W) in [0, 1], y: (N,), classes: N_classes names. Sliders update when released
    (``continuous_update=False``), so a slow model is attacked once per move. Returns a VBox;
    ``panel.update()`` redraws it (useful in tests), ``panel.controls`` holds the sliders.
    """
    import ipywidgets as widgets
    from IPython.display import display

    check_images(x)
    check_labels(y, x)
    eps_max = check_nonnegative(eps_max, "eps_max")
    eps_step = check_nonnegative(eps_step, "eps_step")
    if eps_max == 0 or eps_step == 0 or eps_step > eps_max:
        raise ValueError(f"need 0 < eps_step <= eps_max, got eps_step={eps_step}, eps_max={eps_max}")
    max_steps = check_positive_int(max_steps, "max_steps")
    norm = check_norm(norm)
    style = {"description_width": "initial"}
    controls = {
        "index": widgets.IntSlider(0, 0, len(x) - 1, description="image", continuous_update=False, style=style),
        "eps": widgets.FloatSlider(min(eps_max, 10 * eps_step), min=0.0, max=eps_max, step=eps_step,
                                   description=f"eps ({norm})", continuous_update=False, readout_format=".3f", style=style),
        "steps": widgets.IntSlider(min(10, max_steps), 1, max_steps, description="PGD steps", continuous_update=False, style=style),
        "attack": widgets.ToggleButtons(options=[("FGSM", "fgsm"), ("PGD", "pgd")], value="pgd", description="attack", style=style),
    }
    out = widgets.Output()

    def update(change=None):
        c = {k: w.value for k, w in controls.items()}
        controls["steps"].disabled = c["attack"] == "fgsm"
        state = explorer_state(model, x, y, c["index"], c["eps"], c["steps"], norm=norm, attack=c["attack"])
        fig = explorer_figure(x[c["index"]].detach().cpu(), state, classes, norm)
        with out:
            out.clear_output(wait=True)
            display(fig)
        plt.close(fig)
        return state

    for w in controls.values():
        w.observe(update, names="value")
    panel = widgets.VBox([widgets.HBox([controls["index"], controls["attack"]]),
                          widgets.HBox([controls["eps"], controls["steps"]]), out])
    panel.update, panel.controls = update, controls
    update()
    return panel
