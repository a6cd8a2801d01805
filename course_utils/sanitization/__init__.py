"""Input sanitization (notebook 06): feature squeezing, detectors, the MagNet autoencoder, adaptive attacks.

- ``squeeze``: squeezers (bit depth, median, non-local means; Xu et al. 2018), ``Detector``,
  ``SqueezeDetector``, ``ConfidenceDetector``, detection rates, ROC points and stream monitoring.
- ``autoencoder``: the MagNet autoencoder (Meng & Chen 2017), its reconstruction detector and purifier.
- ``adaptive``: BPDA (Athalye et al. 2018), the detector-aware attack (Carlini & Wagner 2017) and ``bypass_verdict``.
- ``victims``: notebook 06's CIFAR-10 model (``cifar_model``), shared with notebook 09 and the benchmark.
The one detector-threshold rule is ``threshold_for_fpr`` (high score = suspicious). Every public name is importable from
this package: ``from course_utils import sanitization``; ``sanitization.SqueezeDetector(...)``.
"""
from .squeeze import (bit_depth, flippable_pixels, median_smooth, non_local_means, paper_squeezers, threshold_for_fpr, Detector,
    SqueezeDetector, ConfidenceDetector, detection_rate, roc_points, stream_flag_rate, detection_report)
from .autoencoder import magnet_autoencoder, train_autoencoder, ReconstructionDetector, Purified, reconstruct
from .victims import cifar_recipe, cifar_cache_name, cifar_model
from .adaptive import bpda, BPDAModel, DetectorAwareModel, adaptive_pgd, bypass_verdict
