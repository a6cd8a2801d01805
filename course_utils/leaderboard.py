"""Where CIFAR-10 L-infinity 8/255 robustness stands: RobustBench entries beside the course's models.

Notebook 05 (the "> 70% under strong PGD" question) and the interview bank (``at-seventy``).

``CIFAR10_LINF``: a tuple of ``Entry`` (clean and AutoAttack accuracy as fractions in [0, 1], on
the 10,000 CIFAR-10 test images, as RobustBench reports them). Every figure is copied from the file
``model_info/cifar10/Linf/<name>.json`` of the repository RobustBench/robustbench at commit
``COMMIT`` (fields ``clean_acc``, ``autoattack_acc``, ``architecture``, ``additional_data``,
``footnote``, ``link``, ``venue``); the number of generated images comes from that file's footnote
("It uses additional 300M synthetic images in training."). ``params`` was counted by building
each entry's architecture from RobustBench's own code at the same commit
(``robustbench/model_zoo/cifar10.py`` and ``model_zoo/architectures/``) on PyTorch's meta device
and summing ``p.numel()``: it is not in the JSON files.

A selection: single adversarially trained models. Left out at that commit, among others: the entries
that post-process or ensemble these models (``Amini2024MeanSparse_S-WRN-94-16``, MeanSparse on
Bartoldson et al.'s WRN-94-16, 75.28% AutoAttack, whose footnote gives 73.10% under APGD with BPDA;
``Amini2024MeanSparse_Ra_WRN_70_16`` on Peng et al.'s model, 72.08% / 68.94%; the ensemble
``Bai2024MixedNUTS``, 70.08%) and entries RobustBench marks ``unreliable`` (``Kang2021Stable``).

- ``table()``: the entries as a DataFrame (percent columns for reading); ``validate()`` checks them.
- ``plot(ours)``: clean against AutoAttack accuracy, colour by training data, marker area by
  parameters, with the learner's own models (``EvalResult`` pairs) highlighted with their intervals.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

SOURCE_REPO = "RobustBench/robustbench"
COMMIT = "78fcc9e48a07a861268f295a777b975f25155964"  # 2025-03-31, "Merge pull request #210 from RobustBench/timm-fixes"
THREAT = "CIFAR-10, L-inf eps=8/255, AutoAttack (standard), 10,000 test images"


@dataclass(frozen=True)
class Entry:
    """One RobustBench model. clean, autoattack: fractions in [0, 1]; params: parameter count;
    extra_real_data: RobustBench's ``additional_data`` (real images beyond CIFAR-10's training set);
    generated_images: synthetic training images named in the footnote (0: none)."""

    name: str  # RobustBench model id
    paper: str
    link: str
    venue: str
    architecture: str
    params: int
    clean: float
    autoattack: float
    extra_real_data: bool
    generated_images: int
    footnote: str = ""

    @property
    def source(self) -> str:
        return f"{SOURCE_REPO}@{COMMIT[:7]}:model_info/cifar10/Linf/{self.name}.json"

    @property
    def data(self) -> str:
        """"CIFAR-10 only", "+ N generated images" or "+ extra real images"."""
        if self.extra_real_data:
            return "+ extra real images"
        if self.generated_images:
            return f"+ {self.generated_images / 1e6:g}M generated images"
        return "CIFAR-10 only"


CIFAR10_LINF = (
    Entry("Bartoldson2024Adversarial_WRN-94-16", "Bartoldson et al., Adversarial Robustness Limits via Scaling-Law "
          "and Human-Alignment Studies", "https://arxiv.org/abs/2404.09349", "ICML 2024", "WideResNet-94-16",
          365_915_610, 0.9368, 0.7371, False, 300_000_000, "It uses additional 300M synthetic images in training."),
    Entry("Bartoldson2024Adversarial_WRN-82-8", "Bartoldson et al., Adversarial Robustness Limits via Scaling-Law "
          "and Human-Alignment Studies", "https://arxiv.org/abs/2404.09349", "ICML 2024", "WideResNet-82-8",
          79_125_466, 0.9311, 0.7159, False, 300_000_000, "It uses additional 300M synthetic images in training."),
    Entry("Peng2023Robust", "Peng et al., Robust Principles: Architectural Design Principles for Adversarially "
          "Robust CNNs", "https://arxiv.org/abs/2308.16258", "BMVC 2023", "RaWideResNet-70-16", 267_240_802, 0.9327,
          0.7107, False, 50_000_000, "It uses additional 50M synthetic images in training."),
    Entry("Wang2023Better_WRN-70-16", "Wang et al., Better Diffusion Models Further Improve Adversarial Training",
          "https://arxiv.org/abs/2302.04638", "ICML 2023", "WideResNet-70-16", 266_796_506, 0.9325, 0.7069, False,
          50_000_000, "It uses additional 50M synthetic images in training."),
    Entry("Wang2023Better_WRN-28-10", "Wang et al., Better Diffusion Models Further Improve Adversarial Training",
          "https://arxiv.org/abs/2302.04638", "ICML 2023", "WideResNet-28-10", 36_479_194, 0.9244, 0.6731, False,
          20_000_000, "It uses additional 20M synthetic images in training."),
    Entry("Rebuffi2021Fixing_70_16_cutmix_extra", "Rebuffi et al., Fixing Data Augmentation to Improve Adversarial "
          "Robustness", "https://arxiv.org/abs/2103.01946", "arXiv, Mar 2021", "WideResNet-70-16", 266_796_506,
          0.9223, 0.6658, True, 0,
          "66.56% robust accuracy is due to the original evaluation (AutoAttack + MultiTargeted)"),
    Entry("Gowal2021Improving_70_16_ddpm_100m", "Gowal et al., Improving Robustness using Generated Data",
          "https://arxiv.org/abs/2110.09468", "NeurIPS 2021", "WideResNet-70-16", 266_796_506, 0.8874, 0.6611, False,
          100_000_000, "It uses additional 100M synthetic images in training. 66.10% robust accuracy is due to the "
          "original evaluation (AutoAttack + MultiTargeted)"),
    Entry("Gowal2020Uncovering_70_16_extra", "Gowal et al., Uncovering the Limits of Adversarial Training against "
          "Norm-Bounded Adversarial Examples", "https://arxiv.org/abs/2010.03593", "arXiv, Oct 2020",
          "WideResNet-70-16", 266_796_506, 0.9110, 0.6588, True, 0,
          "65.87% robust accuracy is due to the original evaluation (AutoAttack + MultiTargeted)"),
    Entry("Carmon2019Unlabeled", "Carmon et al., Unlabeled Data Improves Adversarial Robustness",
          "https://arxiv.org/abs/1905.13736", "NeurIPS 2019", "WideResNet-28-10", 38_119_866, 0.8969, 0.5953, True, 0),
    Entry("Gowal2021Improving_R18_ddpm_100m", "Gowal et al., Improving Robustness using Generated Data",
          "https://arxiv.org/abs/2110.09468", "NeurIPS 2021", "PreActResNet-18", 12_548_426, 0.8735, 0.5863, False,
          100_000_000, "It uses additional 100M synthetic images in training. 58.50% robust accuracy is due to the "
          "original evaluation (AutoAttack + MultiTargeted)"),
    Entry("Rebuffi2021Fixing_R18_ddpm", "Rebuffi et al., Fixing Data Augmentation to Improve Adversarial Robustness",
          "https://arxiv.org/abs/2103.01946", "arXiv, Mar 2021", "PreActResNet-18", 12_548_426, 0.8353, 0.5666, False,
          1_000_000, "It uses additional 1M synthetic images in training."),
    Entry("Rice2020Overfitting", "Rice et al., Overfitting in adversarially robust deep learning",
          "https://arxiv.org/abs/2002.11569", "ICML 2020", "WideResNet-34-20", 184_531_674, 0.8534, 0.5342, False, 0),
    Entry("Addepalli2022Efficient_RN18", "Addepalli et al., Efficient and Effective Augmentation Strategy for "
          "Adversarial Training", "https://arxiv.org/abs/2210.15318", "NeurIPS 2022", "ResNet-18", 11_173_962, 0.8571,
          0.5248, False, 0),
    Entry("Wong2020Fast", "Wong et al., Fast is better than free: Revisiting adversarial training",
          "https://arxiv.org/abs/2001.03994", "ICLR 2020", "PreActResNet-18", 11_171_146, 0.8334, 0.4321, False, 0,
          "Focuses on fast adversarial training."),
    Entry("Standard", "Standardly trained model (no adversarial training)", "https://github.com/RobustBench/robustbench/",
          "N/A", "WideResNet-28-10", 36_479_194, 0.9478, 0.0, False, 0),
)

def validate(entries=CIFAR10_LINF) -> None:
    """ValueError unless every entry is well-formed: accuracies are fractions with AutoAttack <= clean,
    a positive parameter count, a unique name, a link, and a generated-image count that matches the
    footnote's ("additional 300M synthetic images"; RobustBench's extra-real-data entries have none)."""
    import re

    seen = set()
    for e in entries:
        where = f"leaderboard entry {e.name!r}"
        if e.name in seen:
            raise ValueError(f"{where}: duplicate name")
        seen.add(e.name)
        for field_name in ("clean", "autoattack"):
            v = getattr(e, field_name)
            if not isinstance(v, float) or not 0.0 <= v <= 1.0:
                raise ValueError(f"{where}: {field_name} must be a fraction in [0, 1] (not percent), got {v!r}")
        if e.autoattack > e.clean:
            raise ValueError(f"{where}: AutoAttack accuracy {e.autoattack} above clean accuracy {e.clean}")
        if not isinstance(e.params, int) or e.params <= 0:
            raise ValueError(f"{where}: params must be a positive int, got {e.params!r}")
        if not e.link.startswith("https://") or not e.paper or not e.architecture:
            raise ValueError(f"{where}: paper, link and architecture are required")
        m = re.search(r"additional (\d+)M synthetic images", e.footnote)
        expected = int(m.group(1)) * 1_000_000 if m else 0
        if e.generated_images != expected:
            raise ValueError(f"{where}: generated_images={e.generated_images} but the footnote says {expected}")
        if e.extra_real_data and e.generated_images:
            raise ValueError(f"{where}: counted as both extra real and generated data")


DATA_COLORS = {"CIFAR-10 only": "tab:blue", "generated images": "tab:orange", "extra real images": "tab:green"}


def data_kind(entry: Entry) -> str:
    """The colour key of an entry: "CIFAR-10 only", "generated images" or "extra real images"."""
    return "extra real images" if entry.extra_real_data else "generated images" if entry.generated_images else "CIFAR-10 only"


def table(entries=CIFAR10_LINF):
    """The entries as a DataFrame, best AutoAttack accuracy first: accuracies in percent (as RobustBench
    prints them), parameters in millions, the training data and the source file of every row."""
    import pandas as pd

    rows = [{"model": e.name, "architecture": e.architecture, "params (M)": round(e.params / 1e6, 1),
             "training data": e.data, "clean %": round(100 * e.clean, 2), "AutoAttack %": round(100 * e.autoattack, 2),
             "venue": e.venue, "source": e.source} for e in entries]
    df = pd.DataFrame(rows).sort_values("AutoAttack %", ascending=False, ignore_index=True)
    df.attrs["threat model"] = THREAT
    return df


def as_dicts(entries=CIFAR10_LINF) -> list[dict]:
    """The entries as plain dicts (fractions, not percent)."""
    return [asdict(e) for e in entries]


def plot(ours=(), entries=CIFAR10_LINF, ax=None, target: float | None = None):
    """Clean (x) against AutoAttack accuracy (y) of ``entries``; colour = training data, marker area ~ params.

    ours: ``(label, clean, robust, params)`` tuples for the learner's models, where clean and robust
    are ``evaluation.EvalResult`` (drawn with their 95% intervals as error bars) and params an int.
    target: a horizontal line (e.g. 0.70, the manager's request). Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    biggest = max(e.params for e in entries)

    def area(params):
        return 20 + 380 * (params / biggest) ** 0.5

    for kind, color in DATA_COLORS.items():
        sel = [e for e in entries if data_kind(e) == kind]
        if sel:
            ax.scatter([e.clean for e in sel], [e.autoattack for e in sel], s=[area(e.params) for e in sel], c=color,
                       alpha=0.6, edgecolors="k", linewidths=0.5, label=f"RobustBench, {kind}")
    for e in entries:
        ax.annotate(f"{e.architecture} ({e.name.split('_')[0]})", (e.clean, e.autoattack), fontsize=6,
                    xytext=(4, -3), textcoords="offset points")
    for label, clean, robust, params in ours:
        (clo, chi), (rlo, rhi) = clean.ci, robust.ci
        ax.errorbar(clean.accuracy, robust.accuracy, xerr=[[clean.accuracy - clo], [chi - clean.accuracy]],
                    yerr=[[robust.accuracy - rlo], [rhi - robust.accuracy]], fmt="*", ms=14, color="tab:red",
                    mec="k", capsize=3, label=f"{label} ({params / 1e6:.2g}M params; n={robust.n})", zorder=5)
    lowest = min([e.clean for e in entries] + [clean.ci[0] for _, clean, _, _ in ours])
    ax.set(xlabel="clean accuracy", ylabel="AutoAttack accuracy", xlim=(max(0.0, lowest - 0.05), 1.0), ylim=(0, 1),
           title="CIFAR-10, L-inf 8/255: RobustBench (marker area ~ parameters) and your models")
    if target is not None:
        ax.axhline(target, ls="--", color="grey", lw=1)
        ax.annotate(f"requested: {100 * target:g}%", (ax.get_xlim()[0], target), xytext=(2, 3),
                    textcoords="offset points", fontsize=8, color="grey")
    ax.legend(fontsize=7, loc="upper left")
    return ax
