"""Interview preparation (notebook 09): the question bank, reveal widgets and a self-quiz.

- ``QUESTIONS``: ``Question``s (id, area, question, answer strategy, model answer, and the
  experiment that backs it), from ``interview.bank``; ``AREAS`` in order.
- ``question_table(area=None)``: the bank as a DataFrame (no answers, so it can be skimmed).
- ``sample(n, seed, area)``: random questions, seeded.
- ``reveal(q)``: a widget with the question and two buttons that show the strategy and the model
  answer; ``bank_widget(questions)``: an accordion of them.
- ``SelfQuiz``: random questions, a text box for the learner's answer, then the model answer.

Widgets are built with ipywidgets and only react to clicks, so nothing blocks when a notebook runs
unattended (nbval, nbconvert). ``SelfQuiz.reveal()`` / ``.next()`` do what the buttons do.
"""
from __future__ import annotations

import html
import random
from dataclasses import dataclass

from .bank import BANK


@dataclass(frozen=True)
class Question:
    """One interview question: ``qid`` (short id), ``area``, the ``question``, how to approach it
    (``strategy``), a model ``answer``, and ``experiment``: where numbers backing it come from."""

    qid: str
    area: str
    question: str
    strategy: str
    answer: str
    experiment: str | None = None

    def markdown(self, with_answer: bool = True) -> str:
        text = f"**[{self.area}] {self.question}**"
        if with_answer:
            text += f"\n\n*Strategy:* {self.strategy}\n\n*Model answer:* {self.answer}"
            if self.experiment:
                text += f"\n\n*Backed by:* {self.experiment}"
        return text


QUESTIONS = tuple(Question(*row) for row in BANK)
AREAS = tuple(dict.fromkeys(q.area for q in QUESTIONS))
_BY_ID = {q.qid: q for q in QUESTIONS}


def get(qid: str) -> Question:
    """The question with id ``qid``."""
    if qid not in _BY_ID:
        raise ValueError(f"no question with id {qid!r}; ids are {sorted(_BY_ID)}")
    return _BY_ID[qid]


def questions(area: str | None = None) -> list[Question]:
    """All questions, or those of one ``area`` (one of ``AREAS``)."""
    if area is None:
        return list(QUESTIONS)
    if area not in AREAS:
        raise ValueError(f"area must be one of {AREAS}, got {area!r}")
    return [q for q in QUESTIONS if q.area == area]


def question_table(area: str | None = None):
    """The bank as a DataFrame: id, area, question, backed by (answers hidden)."""
    import pandas as pd

    return pd.DataFrame([{"id": q.qid, "area": q.area, "question": q.question, "backed by": q.experiment or ""}
                         for q in questions(area)])


def sample(n: int, seed: int | None = None, area: str | None = None) -> list[Question]:
    """``n`` distinct random questions (seeded when ``seed`` is given), optionally from one area."""
    pool = questions(area)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(pool):
        raise ValueError(f"n must be an integer in 1..{len(pool)}, got {n!r}")
    return random.Random(seed).sample(pool, n)


def _html_block(title: str, body: str, color: str) -> str:
    return (f"<div style='border-left: 4px solid {color}; padding: 4px 10px; margin: 4px 0'>"
            f"<b>{html.escape(title)}</b><br>{html.escape(body)}</div>")


def reveal(q: Question):
    """A widget: the question, and buttons that show the answer strategy and the model answer."""
    import ipywidgets as W

    question = W.HTML(f"<p><b>{html.escape(q.question)}</b> <i>({html.escape(q.area)})</i></p>")
    strategy = W.HTML(_html_block("Answer strategy", q.strategy, "#1f77b4"), layout=W.Layout(display="none"))
    extra = f" Backed by: {q.experiment}." if q.experiment else ""
    answer = W.HTML(_html_block("Model answer", q.answer + extra, "#2ca02c"), layout=W.Layout(display="none"))
    b_strategy = W.Button(description="Show strategy", icon="lightbulb-o")
    b_answer = W.Button(description="Show model answer", icon="eye")

    def toggle(panel, button, label):
        def handler(_):
            shown = panel.layout.display != "none"
            panel.layout.display = "none" if shown else ""
            button.description = f"Show {label}" if shown else f"Hide {label}"
        return handler

    b_strategy.on_click(toggle(strategy, b_strategy, "strategy"))
    b_answer.on_click(toggle(answer, b_answer, "model answer"))
    return W.VBox([question, W.HBox([b_strategy, b_answer]), strategy, answer])


def bank_widget(qs=None):
    """An accordion with one ``reveal`` panel per question (default: the whole bank)."""
    import ipywidgets as W

    qs = list(QUESTIONS if qs is None else qs)
    return W.Accordion(children=[reveal(q) for q in qs],
                       titles=tuple(f"{i + 1}. [{q.area}] {q.question[:70]}" for i, q in enumerate(qs)))


class SelfQuiz:
    """Random questions one at a time: type an answer, then compare it with the model answer.

    ``quiz = SelfQuiz(n=5, seed=None)``; display ``quiz.widget``. ``quiz.answers`` keeps what was
    typed for each question id. ``reveal()`` and ``next()`` are what the two buttons call.
    """

    def __init__(self, n: int = 5, seed: int | None = None, area: str | None = None):
        import ipywidgets as W

        self.questions = sample(n, seed, area)
        self.index, self.answers = 0, {}
        self._header = W.HTML()
        self._text = W.Textarea(placeholder="Type your answer here, then press 'Show model answer'.",
                                layout=W.Layout(width="100%", height="120px"))
        self._feedback = W.HTML()
        self._b_reveal = W.Button(description="Show model answer", button_style="info")
        self._b_next = W.Button(description="Next question")
        self._b_reveal.on_click(lambda _: self.reveal())
        self._b_next.on_click(lambda _: self.next())
        self.widget = W.VBox([self._header, self._text, W.HBox([self._b_reveal, self._b_next]), self._feedback])
        self._show()

    @property
    def current(self) -> Question:
        return self.questions[self.index]

    def _show(self):
        q = self.current
        self._header.value = (f"<p>Question {self.index + 1} of {len(self.questions)} "
                              f"<i>({html.escape(q.area)})</i></p><p><b>{html.escape(q.question)}</b></p>")
        self._text.value = self.answers.get(q.qid, "")
        self._feedback.value = ""

    def reveal(self) -> str:
        """Store the typed answer and show it beside the strategy and the model answer; returns the HTML."""
        q = self.current
        self.answers[q.qid] = self._text.value
        mine = self._text.value.strip() or "(nothing typed)"
        self._feedback.value = (_html_block("Your answer", mine, "#7f7f7f")
                                + _html_block("Answer strategy", q.strategy, "#1f77b4")
                                + _html_block("Model answer", q.answer, "#2ca02c"))
        return self._feedback.value

    def next(self) -> Question | None:
        """Move to the next question (keeping the typed answer); ``None`` after the last."""
        self.answers.setdefault(self.current.qid, self._text.value)
        if self.index + 1 >= len(self.questions):
            self._feedback.value = (f"<p>Done: {len(self.questions)} questions. Run the cell again for a new "
                                    "set, or compare your answers in <code>quiz.answers</code>.</p>")
            return None
        self.index += 1
        self._show()
        return self.current

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
