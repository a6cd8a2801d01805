"""Certified defenses (notebooks 07, 08; project p3): randomized smoothing, IBP and linear relaxations.

- ``smoothing``: ``Smooth`` (PREDICT / CERTIFY of Cohen et al. 2019), ``certify_dataset``,
  ``certified_accuracy``, ``NoisySoftmax``, ``noise_augment``; ``ABSTAIN`` (-1) is the abstention label.
- ``ibp``: ``interval_bounds``, ``margin_lower_bounds``, ``verified``, ``ibp_loss``, ``ibp_fit`` (Gowal et al. 2018).
- ``relaxation``: ``crown_bounds``, ``crown_margin_lower_bounds`` (Zhang et al. 2018), ``alpha_crown_margin_lower_bounds``
  (Xu et al. 2021), ``lp_margin_lower_bounds`` (triangle LP), ``exact_margin_lower_bounds`` (MILP),
  ``margin_lower_bounds_by`` / ``verified_by`` / ``verified_accuracy_by`` over ``METHODS``.
- ``bab``: ``bab_verify`` (branch and bound over ReLU splits with alpha-CROWN bounds: verified / falsified / unknown).
- ``compare``: ``side_by_side`` (clean, PGD, AutoAttack, IBP and CROWN accuracy of one model at one radius, with
  seconds per image: notebook 09).
Every public name is importable from this package: ``from course_utils import certify``.
"""
from .smoothing import (ABSTAIN, lower_confidence_bound, certified_radius, Smooth, certify_dataset,
    certified_accuracy, max_certifiable_radius, NoisySoftmax, noise_augment)
from .ibp import (SUPPORTED, input_box, layer_bounds, interval_bounds, margin_lower_bounds, supported_layers, verified,
    verified_accuracy, ibp_loss, ibp_schedule, ibp_fit)
from .relaxation import (METHODS, ALPHA_STEPS, ALPHA_LR, affine_blocks, affine_segments, relu_relaxation,
    preactivation_bounds, crown_bounds, crown_margin_lower_bounds, optimize_slopes, alpha_crown_margin_lower_bounds,
    lp_margin_lower_bounds, exact_margin_lower_bounds, margin_lower_bounds_by, verified_by, verified_accuracy_by)
from .bab import STATUSES, BaBResult, bab_verify
from .compare import side_by_side
