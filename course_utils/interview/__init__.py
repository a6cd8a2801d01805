"""Interview preparation (notebook 09): the question bank, self-quiz widgets and answer reveal.

- ``bank``: the questions and model answers (data, ``BANK``).
- ``numbers``: ``error_rate`` and ``break_even_attack_share`` (the business framing of ``at-product``).
- ``questions``: ``Question``, ``get``, ``questions``, ``question_table``, ``sample``, ``reveal``, ``SelfQuiz``.
"""
from .questions import (Question, QUESTIONS, AREAS, get, questions, question_table, sample, reveal,
    bank_widget, SelfQuiz)
from .bank import BANK
from .numbers import break_even_attack_share, error_rate
