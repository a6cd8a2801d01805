"""Certified defenses (notebooks 07, 08; project p3): randomized smoothing and interval bound propagation.

- ``smoothing``: ``Smooth`` (PREDICT / CERTIFY of Cohen et al. 2019), ``certify_dataset``,
  ``certified_accuracy``, ``NoisySoftmax``, ``noise_augment``; ``ABSTAIN`` (-1) is the abstention label.
- ``ibp``: ``interval_bounds``, ``margin_lower_bounds``, ``verified``, ``ibp_loss``, ``ibp_fit`` (Gowal et al. 2018).
Every public name is importable from this package: ``from course_utils import certify``.
"""
from .smoothing import (ABSTAIN, lower_confidence_bound, certified_radius, Smooth, certify_dataset,
    certified_accuracy, max_certifiable_radius, NoisySoftmax, noise_augment)
from .ibp import (SUPPORTED, input_box, layer_bounds, interval_bounds, margin_lower_bounds, verified,
    verified_accuracy, ibp_loss, ibp_schedule, ibp_fit)
