"""Threat modeling (notebook 01): the threat-model value, worked examples and measured demonstrations.

- ``model``: ``Attacker``, ``Threat``, ``ThreatModel`` (assets, attacker goals, knowledge and
  capabilities, STRIDE category per threat), ``validate_threat_model``, ``stride_reference``.
- ``examples``: three completed threat models (traffic signs, card fraud, content moderation).
- ``demos``: model extraction through a prediction API and data poisoning with a backdoor trigger.
Every public name is importable from this package: ``from course_utils import threats``.
"""
from .model import (STRIDE, STRIDE_CATEGORIES, LEVELS, ATTACK_KINDS, KNOWLEDGE, stride_category,
    stride_reference, Attacker, Threat, ThreatModel, validate_threat_model)
from .examples import traffic_sign_classifier, card_fraud_detector, content_moderation, EXAMPLES
from .demos import (predict, train_classifier, PredictionAPI, agreement, extract_model, stamp_trigger, poison,
    trigger_success, extraction_curve, backdoor_table)
