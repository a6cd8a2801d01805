"""Training (notebooks 02-05, 07, 08, projects): one loop, adversarial training, checkpoints, one safe loader.

- ``loop``: ``train_step``, ``train_epoch``, ``fit`` (the attack and the loss are parameters),
  ``make_optimizer``, ``make_scheduler``, ``mix_batch``, ``cross_entropy_loss`` (the default loss hook).
- ``adversarial``: ``curriculum``, ``AdversarialTrainingConfig``, ``adversarial_fit``, ``FitResult``,
  ``robust_overfitting_verdict`` (Rice et al. 2020's phenomenon, read from a history),
  ``catastrophic_overfitting`` (one single-step run's outcome: robust, collapsed or underfit; a run that never
  became robust is underfit), ``single_step_verdict`` (collapses counted over seeds) and
  ``tradeoff_verdict`` (clean accuracy paid for robustness, beyond noise, on the same images).
- ``trades``: ``trades_loss`` (TRADES, Zhang et al. 2019, as a loss hook) and its inner maximization
  ``trades_perturb``.
- ``checkpoints``: ``save_checkpoint`` / ``load_checkpoint`` (SHA-256 sidecar, ``weights_only``),
  ``load_model_file`` (the gate's and the service's loader), ``ModelFileError``, ``cached_model``
  (and its ``cached_model_path``).
- ``distributed``: ``Run`` (``adversarial_fit(..., run=...)``: DDP under torchrun, gloo on the CPU and NCCL
  on CUDA, a resumable state every epoch, ``ResumeError``) and ``precision_policy`` (bf16 / fp16 autocast
  and channels-last on CUDA): what ``python -m course_utils.zoo train <recipe>`` runs (issue 36).
- ``union``: notebook 04's L-infinity trap: the standard, L-inf, L2 and union-trained MNIST models of
  one recipe (``union.model(kind)``), the threat models of its table and the findings read from it.
"""
from .adversarial import (AdversarialTrainingConfig, FitResult, adversarial_fit, catastrophic_overfitting, curriculum,
                          robust_overfitting_verdict, single_step_verdict, tradeoff_verdict)
from .checkpoints import (ModelFileError, cached_field, cached_model, cached_model_path, load_checkpoint, load_model_file, read_sidecar,
                          save_checkpoint)
from .loop import (cross_entropy_loss, fit, make_optimizer, make_scheduler, mix_batch, train_classifier, train_epoch,
                   train_step)
from .trades import trades_loss, trades_perturb
from . import union

__all__ = ["AdversarialTrainingConfig", "FitResult", "ModelFileError", "adversarial_fit", "cached_field", "catastrophic_overfitting", "cached_model",
           "cached_model_path", "cross_entropy_loss", "curriculum", "fit", "load_checkpoint", "load_model_file", "make_optimizer", "make_scheduler",
           "mix_batch", "read_sidecar", "robust_overfitting_verdict", "save_checkpoint", "single_step_verdict", "tradeoff_verdict", "trades_loss", "trades_perturb", "train_classifier", "train_epoch", "train_step"]
