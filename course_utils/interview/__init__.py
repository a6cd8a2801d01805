"""Interview preparation (notebook 09): the question bank, self-quiz widgets and answer reveal.

- ``bank``: the questions and model answers (data, ``BANK``).
- ``questions``: ``Question``, ``get``, ``questions``, ``question_table``, ``sample``, ``reveal``, ``SelfQuiz``.
"""
from .questions import (Question, QUESTIONS, AREAS, get, questions, question_table, sample, reveal,
    bank_widget, SelfQuiz)
from .bank import BANK
