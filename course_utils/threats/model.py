"""Threat models for ML systems as data: threats, STRIDE tables and validation (notebook 01).

A threat model answers four questions (Shostack 2014, "Threat Modeling: Designing for Security"):
what are we building, what can go wrong, what are we going to do about it, and did we do a good
job. Here it is a ``ThreatModel``: the system, its assets and entry points, the ``Attacker``s
(goal, knowledge, capabilities; Biggio & Roli 2018, "Wild patterns") and a list of ``Threat``s,
each filed under one STRIDE category (Kohnfelder & Garg 1999; Microsoft's ML threat taxonomy,
Marshall et al. 2019) with likelihood, impact, a mitigation and the test that would show the
mitigation works.

- ``ThreatModel.table()``: the threats as a pandas DataFrame, highest risk first within each
  STRIDE category; ``ThreatModel.stride_table()``: one row per category (the coverage check);
  both render as HTML in a notebook (``_repr_html_``).
- ``validate_threat_model(tm)``: the list of problems (every STRIDE category considered, every
  threat with a mitigation and a test, ...), each naming what is missing; ``ThreatModel.validate()``
  raises ``ValueError`` with all of them.

Malformed fields (an unknown STRIDE category, a likelihood that is not low/medium/high) raise
``ValueError`` at construction; incompleteness is reported by validation, so a learner can build a
model step by step and ask what is still missing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

STRIDE = {  # category -> (security property it violates, what it looks like in an ML system)
    "Spoofing": ("authenticity", "posing as another user, client, device or data source: stolen API keys, "
                 "a fake sensor, forged training-data contributors"),
    "Tampering": ("integrity", "changing inputs, training data, labels or weights: evasion (adversarial "
                  "examples, patches), poisoning and backdoors, a swapped model file"),
    "Repudiation": ("accountability", "acting without a trace: unlogged queries, unversioned data and models, "
                    "no record of who changed a label or pushed a model"),
    "Information disclosure": ("confidentiality", "leaking the model or its data: model extraction, membership "
                               "inference, model inversion, verbose confidence scores"),
    "Denial of service": ("availability", "making the system unusable: query floods, sponge inputs, "
                          "availability poisoning that ruins accuracy"),
    "Elevation of privilege": ("authorization", "getting powers one should not have: a backdoor trigger that "
                               "acts as a master key, a misclassification that bypasses a filter, "
                               "pipeline credentials"),
}
STRIDE_CATEGORIES = tuple(STRIDE)
LEVELS = ("low", "medium", "high")
ATTACK_KINDS = ("evasion", "poisoning", "backdoor", "extraction", "inference", "conventional")
KNOWLEDGE = ("white-box", "grey-box", "black-box")
_PLACEHOLDERS = {"", "todo", "tbd", "tba", "none", "n/a", "na", "?", "...", "-", "xxx"}
_ABBREV = {"S": "Spoofing", "T": "Tampering", "R": "Repudiation", "I": "Information disclosure",
           "D": "Denial of service", "E": "Elevation of privilege"}


def stride_category(name: str) -> str:
    """The canonical STRIDE category for ``name`` (case-insensitive; the letters S, T, R, I, D, E work)."""
    if not isinstance(name, str):
        raise ValueError(f"stride must be a string, one of {STRIDE_CATEGORIES}, got {type(name).__name__}")
    key = name.strip()
    if key.upper() in _ABBREV and len(key) == 1:
        return _ABBREV[key.upper()]
    for cat in STRIDE_CATEGORIES:
        if key.lower() == cat.lower():
            return cat
    raise ValueError(f"stride must be one of {STRIDE_CATEGORIES} (or its first letter), got {name!r}")


def _level(value, what: str) -> str:
    if not isinstance(value, str) or value.strip().lower() not in LEVELS:
        raise ValueError(f"{what} must be one of {LEVELS}, got {value!r}")
    return value.strip().lower()


def _missing(text) -> bool:
    return not isinstance(text, str) or text.strip().lower().rstrip(".") in _PLACEHOLDERS


def stride_reference():
    """The six STRIDE categories as a DataFrame: the property each violates and its ML face."""
    import pandas as pd

    return pd.DataFrame([{"STRIDE": c, "violates": p, "in an ML system": ex} for c, (p, ex) in STRIDE.items()])


@dataclass
class Attacker:
    """Who attacks: goal (what they want), knowledge (white-, grey- or black-box), capabilities."""

    name: str
    goal: str
    knowledge: str = "black-box"
    capabilities: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.knowledge not in KNOWLEDGE:
            raise ValueError(f"Attacker {self.name!r}: knowledge must be one of {KNOWLEDGE}, got {self.knowledge!r}")
        if isinstance(self.capabilities, str):
            self.capabilities = [self.capabilities]


@dataclass
class Threat:
    """One thing that can go wrong, filed under a STRIDE category.

    name: short title; stride: a STRIDE category; attack: one of ``ATTACK_KINDS`` (``conventional``
    for threats that are not specific to ML); likelihood, impact: ``low`` / ``medium`` / ``high``;
    mitigation: what lowers likelihood or impact; test: the experiment or monitoring that would
    show the mitigation works (e.g. "PGD-50, eps 0.3, 1,000 images: robust accuracy >= 85%").
    """

    name: str
    stride: str
    description: str = ""
    attack: str = "conventional"
    asset: str = ""
    likelihood: str = "medium"
    impact: str = "medium"
    mitigation: str = ""
    test: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Threat name must be a non-empty string, got {self.name!r}")
        try:
            self.stride = stride_category(self.stride)
        except ValueError as e:
            raise ValueError(f"Threat {self.name!r}: {e}") from None
        if self.attack not in ATTACK_KINDS:
            raise ValueError(f"Threat {self.name!r}: attack must be one of {ATTACK_KINDS}, got {self.attack!r}")
        self.likelihood = _level(self.likelihood, f"Threat {self.name!r}: likelihood")
        self.impact = _level(self.impact, f"Threat {self.name!r}: impact")

    @property
    def risk(self) -> int:
        """likelihood x impact on a 1..3 scale each: 1 (low, low) to 9 (high, high)."""
        return (LEVELS.index(self.likelihood) + 1) * (LEVELS.index(self.impact) + 1)


@dataclass
class ThreatModel:
    """A system's threat model: what it is, what it protects, who attacks it, and what can go wrong.

    not_applicable: STRIDE category -> why no threat of that kind applies (a category counts as
    considered when it has a threat or a reason here).
    """

    system: str
    description: str = ""
    assets: list[str] = field(default_factory=list)
    entry_points: list[str] = field(default_factory=list)
    attackers: list[Attacker] = field(default_factory=list)
    threats: list[Threat] = field(default_factory=list)
    not_applicable: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        for t in self.threats:
            if not isinstance(t, Threat):
                raise ValueError(f"threats must be Threat objects, got {type(t).__name__}: {t!r}")
        for a in self.attackers:
            if not isinstance(a, Attacker):
                raise ValueError(f"attackers must be Attacker objects, got {type(a).__name__}: {a!r}")
        self.not_applicable = {stride_category(k): v for k, v in dict(self.not_applicable).items()}

    def add(self, *threats: Threat) -> "ThreatModel":
        """Append threats (returns self, so calls chain)."""
        for t in threats:
            if not isinstance(t, Threat):
                raise ValueError(f"add() takes Threat objects, got {type(t).__name__}")
            self.threats.append(t)
        return self

    def problems(self, require_threat_per_category: bool = False) -> list[str]:
        """What is missing or wrong, one message per problem (empty list: complete)."""
        return validate_threat_model(self, require_threat_per_category)

    def validate(self, require_threat_per_category: bool = False) -> "ThreatModel":
        """Raise ``ValueError`` listing every problem; return self when there is none."""
        problems = self.problems(require_threat_per_category)
        if problems:
            raise ValueError(f"threat model of {self.system!r} is incomplete ({len(problems)} problems):\n- "
                             + "\n- ".join(problems))
        return self

    def table(self):
        """The threats as a DataFrame: STRIDE order, then highest risk first."""
        import pandas as pd

        cols = ["STRIDE", "threat", "attack", "asset", "likelihood", "impact", "risk", "mitigation", "test"]
        rows = [{"STRIDE": t.stride, "threat": t.name, "attack": t.attack, "asset": t.asset,
                 "likelihood": t.likelihood, "impact": t.impact, "risk": t.risk,
                 "mitigation": t.mitigation, "test": t.test} for t in self.threats]
        df = pd.DataFrame(rows, columns=cols)
        order = {c: i for i, c in enumerate(STRIDE_CATEGORIES)}
        df = df.assign(_o=df["STRIDE"].map(order)).sort_values(["_o", "risk"], ascending=[True, False], kind="stable")
        return df.drop(columns="_o").reset_index(drop=True)

    def stride_table(self):
        """One row per STRIDE category: threats filed there, the highest risk, or why it does not apply."""
        import pandas as pd

        rows = []
        for cat in STRIDE_CATEGORIES:
            ts = [t for t in self.threats if t.stride == cat]
            status = "covered" if ts else ("not applicable" if cat in self.not_applicable else "MISSING")
            rows.append({"STRIDE": cat, "violates": STRIDE[cat][0], "threats": len(ts),
                         "highest risk": max((t.risk for t in ts), default=0), "status": status,
                         "names / reason": "; ".join(t.name for t in ts) or self.not_applicable.get(cat, "")})
        return pd.DataFrame(rows)

    def to_html(self) -> str:
        """The threat table as HTML, risk cells shaded (a readable table in a notebook or a report)."""
        df = self.table()
        shade = {1: "#e8f5e9", 2: "#e8f5e9", 3: "#fff8e1", 4: "#fff8e1", 6: "#ffe0b2", 9: "#ffcdd2"}
        styler = df.style.hide(axis="index").map(lambda r: f"background-color: {shade.get(r, '')}", subset=["risk"])
        styler = styler.set_properties(**{"text-align": "left", "vertical-align": "top"})
        title = f"<h4>Threat model: {_escape(self.system)}</h4>"
        return title + styler.to_html()

    def _repr_html_(self) -> str:
        return self.to_html()

    def summary(self) -> str:
        """One line: threats, categories covered, highest risks, problems."""
        covered = sum(1 for c in STRIDE_CATEGORIES if any(t.stride == c for t in self.threats))
        top = sorted(self.threats, key=lambda t: -t.risk)[:3]
        return (f"{self.system}: {len(self.threats)} threats, {covered}/6 STRIDE categories with threats, "
                f"{len(self.problems())} problems; highest risk: " + ", ".join(f"{t.name} ({t.risk})" for t in top))


def _escape(text: str) -> str:
    import html

    return html.escape(str(text))


def validate_threat_model(tm: ThreatModel, require_threat_per_category: bool = False) -> list[str]:
    """The problems of ``tm``, each a sentence naming what is missing (empty list: complete).

    Checks: a system name; at least one asset, entry point and attacker; at least one threat;
    every STRIDE category considered (a threat, or a reason in ``not_applicable``; with
    ``require_threat_per_category`` only a threat counts); unique threat names; every threat with
    a description, a mitigation and a test (placeholders such as "TODO" count as missing).
    """
    if not isinstance(tm, ThreatModel):
        raise ValueError(f"expected a ThreatModel, got {type(tm).__name__}")
    problems = []
    if _missing(tm.system):
        problems.append("the system has no name: say what is being modeled (ThreatModel(system=...))")
    for attr, what in (("assets", "asset (what must be protected)"), ("entry_points", "entry point (where an attacker can act)"),
                       ("attackers", "attacker (Attacker(name, goal, knowledge, capabilities))")):
        if not getattr(tm, attr):
            problems.append(f"no {what}: add at least one to {attr}")
    if not tm.threats:
        problems.append("no threats: add Threat(...) entries")
    reasons = {}
    for key, why in dict(tm.not_applicable).items():
        try:
            reasons[stride_category(key)] = why
        except ValueError:
            problems.append(f"not_applicable has an unknown STRIDE category {key!r}: use one of {STRIDE_CATEGORIES}")
    for cat in STRIDE_CATEGORIES:
        has_threat = any(t.stride == cat for t in tm.threats)
        reason = reasons.get(cat)
        if has_threat:
            continue
        if require_threat_per_category:
            problems.append(f"STRIDE category '{cat}' ({STRIDE[cat][0]}) has no threat: add a Threat with stride='{cat}'")
        elif _missing(reason):
            problems.append(f"STRIDE category '{cat}' ({STRIDE[cat][0]}) not considered: add a Threat with "
                            f"stride='{cat}' or say why none applies in not_applicable['{cat}']")
    seen = set()
    for t in tm.threats:
        if t.name in seen:
            problems.append(f"threat name '{t.name}' is used twice: give each threat its own name")
        seen.add(t.name)
        if _missing(t.description):
            problems.append(f"threat '{t.name}' ({t.stride}) has no description: say how the attack works")
        if _missing(t.mitigation):
            problems.append(f"threat '{t.name}' ({t.stride}) has no mitigation: say what lowers its likelihood or impact")
        if _missing(t.test):
            problems.append(f"threat '{t.name}' ({t.stride}) has no test: say which experiment or monitoring "
                            "would show the mitigation works")
    return problems
