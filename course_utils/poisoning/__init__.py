"""Poisoning and backdoors (notebook 06b; notebook 01's demo and project p4 use it): attacks, detection, certificate.

- ``attacks``: ``Trigger`` (``Trigger.patch``: BadNets, Gu et al. 2017; ``Trigger.blend``: Chen et al.
  2017), ``stamp_trigger``, ``blend``, ``poison`` / ``poison_dataset`` -> ``PoisonedSet`` (the poisoned
  indices are the ground truth), ``adaptive_blend`` (Qi et al. 2023: the attacker who knows the
  detectors), ``trigger_success`` / ``trigger_hits``, ``predict``.
- ``defenses``: ``features`` (a named layer's activations), ``spectral_signature`` /
  ``spectral_scores`` / ``spectral_filter`` (Tran, Li & Madry 2018), ``activation_clustering``
  (Chen et al. 2018 through ART's ``ActivationDefence``), ``detection_report``.
- ``dpa``: Deep Partition Aggregation (Levine & Feizi 2021): ``partition_ids`` (SHA-256 of the uint8
  pixels, modulo k), ``train_partitions``, ``votes``, ``dpa_certificate``, ``certified_accuracy``,
  ``flip_search`` (the brute-force cross-check).
- ``experiments``: the runs of notebook 06b and ``benchmarks/poisoning.py`` (one place for both).
"""
from .attacks import (PoisonedSet, Trigger, adaptive_blend, blend, blend_key, piece_masks, poison, poison_dataset,
                      predict, stamp_trigger, trigger_hits, trigger_success)
from .defenses import (PENULTIMATE, activation_clustering, detection_report, features, knn_label_disagreement, remove_top, spectral_filter,
                       spectral_scores, spectral_signature, suspect_class, tail_ratio)
from . import experiments
from .dpa import (certified_accuracy, dpa_certificate, flip_search, image_hash, partition_ids, sum_partition_ids,
                  to_uint8, train_partitions, votes)

__all__ = ["PENULTIMATE", "PoisonedSet", "Trigger", "activation_clustering", "adaptive_blend", "blend", "blend_key",
           "certified_accuracy", "detection_report", "dpa_certificate", "features", "flip_search", "image_hash", "knn_label_disagreement",
           "partition_ids", "piece_masks", "poison", "poison_dataset", "predict", "remove_top", "spectral_filter", "spectral_scores",
           "spectral_signature", "stamp_trigger", "sum_partition_ids", "suspect_class", "to_uint8", "tail_ratio",
           "train_partitions", "trigger_hits", "trigger_success", "votes"]
