"""A training run beyond one process and one session (issue 36): DistributedDataParallel under
``torchrun``, a resumable state written every epoch, and the precision policy on CUDA.

``adversarial_fit(..., run=Run(...))`` is the course's one loop with this context added, not a second
loop. ``Run.from_env()`` reads torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and
starts the process group: NCCL on CUDA (one process per GPU, ``cuda:LOCAL_RANK``), gloo on the CPU.
Without torchrun it is one process (rank 0 of 1) and nothing is started.

The rules a run follows (the README's "GPU notes" repeats them):

- **Global batch.** Each rank trains ``batch // world_size`` images of every global batch (a
  ``DistributedSampler``, reshuffled per epoch by ``set_epoch``); DDP averages the ranks' gradients,
  so one optimizer step sees the same ``batch`` images, the same mean loss and the same learning
  rate as one process. The learning rate is NOT scaled with the number of GPUs (no "linear scaling
  rule"): the recipe's LR belongs to its global batch, which does not change.
- **Random starts.** Every rank draws the attack's random starts from its own generator, seeded
  ``seed + rank`` (``attack_generator``), so ranks never share a start.
- **Held-out check and early stopping** run on rank 0 only; its numbers are broadcast, and every
  rank takes the same stop decision from them.
- **Batch norm.** With CUDA and more than one process, BN layers become ``SyncBatchNorm`` (statistics
  over the global batch, as in one process). On the CPU (gloo) SyncBatchNorm is not available: BN is
  per rank (statistics over ``batch // world_size`` images; running averages taken from rank 0 at
  every forward, DDP's ``broadcast_buffers``). Models without BN (the MNIST CNN) are unaffected.
- **Resumable state** (``state_path``): after every epoch rank 0 writes model, optimizer, scheduler,
  gradient scaler, every rank's RNG states (python, numpy, torch, CUDA, the attack generator), the
  epoch, the history and the best epoch's weights, with ``config.atomic_write`` (a kill -9 leaves the
  previous state), plus a sidecar (SHA-256, the recipe's identity, epoch, world size). ``resume=True``
  continues from it; a state from another recipe or another world size is refused (``ResumeError``).
- **Precision** (``precision_policy``): on CUDA bf16 autocast where supported, else fp16 autocast
  with a ``GradScaler``; channels-last weights. The attack's inner loop runs under the same autocast.
  Off on the CPU (fp32, the layout the model has).
"""
from __future__ import annotations

import contextlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import atomic_write, get_device, sha256sum


class ResumeError(ValueError):
    """A resumable state that does not belong to this run (another recipe, another world size, damaged)."""


@dataclass
class Precision:
    """The precision policy of a run: autocast ``dtype`` (None = fp32), a ``GradScaler`` (fp16 only)
    and channels-last weights."""

    dtype: torch.dtype | None = None
    scaler: object | None = None
    channels_last: bool = False

    def autocast(self, device_type: str):
        """``torch.autocast(device_type, dtype)`` when the policy casts, else a context that does nothing."""
        return torch.autocast(device_type, dtype=self.dtype) if self.dtype is not None else contextlib.nullcontext()

    def __str__(self):
        cast = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + GradScaler"}[self.dtype]
        return cast + (", channels-last" if self.channels_last else "")


def precision_policy(device, choice: str = "auto") -> Precision:
    """The precision policy on ``device``: ``"auto"`` = on CUDA bf16 autocast where the GPU supports it,
    else fp16 with a ``GradScaler``, and channels-last weights; fp32 elsewhere. ``"off"``: fp32 everywhere;
    ``"bf16"`` / ``"fp16"``: that autocast (CUDA only)."""
    device = torch.device(device)
    if choice not in ("auto", "off", "bf16", "fp16"):
        raise ValueError(f"precision must be 'auto', 'off', 'bf16' or 'fp16', got {choice!r}")
    if choice == "off" or (choice == "auto" and device.type != "cuda"):
        return Precision()
    if device.type != "cuda":
        raise ValueError(f"precision={choice!r} needs CUDA (the CPU trains in fp32), got device {device}")
    if choice == "auto":
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if choice == "bf16":
        return Precision(torch.bfloat16, None, True)
    return Precision(torch.float16, torch.amp.GradScaler("cuda"), True)


def rng_state(generator: torch.Generator | None = None, device=None) -> dict:
    """This process's random states as plain values (loadable with ``weights_only=True``): Python,
    NumPy, torch's CPU generator, ``generator``'s, and the CUDA generator of ``device`` when it is a
    CUDA device (only this process's GPU: touching the others would open a context on each)."""
    version, mt, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(mt), gauss], "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if device is not None and torch.device(device).type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None, device=None) -> None:
    """Restore what ``rng_state`` returned (the attack generator's state into ``generator``, the CUDA
    one into ``device``'s generator)."""
    version, mt, gauss = state["python"]
    random.setstate((version, tuple(mt), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device is not None and torch.device(device).type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


class Run:
    """One training run's context for ``adversarial_fit``: process group, precision, resumable state.

    rank / world_size / local_rank: this process among ``world_size`` (1 = one process). device: the
    process's device (``cuda:LOCAL_RANK`` under torchrun with CUDA). state_path: where the resumable
    state goes (None: no per-epoch state). resume: continue from it. identity: a JSON-ready dict that
    names the recipe (a state with another identity is refused). seed: the attack generator's seed
    (``seed + rank``). on_epoch(epoch, run): called on every rank after an epoch's state is written.
    """

    def __init__(self, rank: int = 0, world_size: int = 1, local_rank: int = 0, device=None, precision: Precision | None = None,
                 state_path=None, resume: bool = False, identity: dict | None = None, seed: int = 0, on_epoch=None):
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = torch.device(device) if device is not None else get_device()
        self.precision = precision or Precision()
        self.state_path = Path(state_path) if state_path is not None else None
        self.resume, self.identity, self.seed, self.on_epoch = resume, identity or {}, seed, on_epoch
        self.generator = torch.Generator().manual_seed(seed + rank)  # the attack's random starts, per rank (on the CPU)

    @classmethod
    def from_env(cls, precision: str = "auto", **kwargs) -> "Run":
        """The run torchrun started (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), its process group initialised
        (NCCL with CUDA, gloo without), or one process when those variables are absent."""
        import torch.distributed as dist

        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
        device = get_device()
        if world > 1:
            if device.type == "cuda":
                device = torch.device("cuda", local)
                torch.cuda.set_device(device)
            if not dist.is_initialized():
                dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(rank, world, local, device, precision_policy(device, precision), **kwargs)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def per_rank_batch(self, batch: int) -> int:
        """``batch // world_size``: this rank's share of a global batch (which must divide evenly)."""
        if batch % self.world_size:
            raise ValueError(f"the global batch {batch} does not split evenly over {self.world_size} processes")
        return batch // self.world_size

    def wrap(self, model):
        """The model to train: channels-last if the policy says so; under DDP (SyncBatchNorm on CUDA) when
        distributed. The attacks and the held-out check use the unwrapped model."""
        if self.precision.channels_last:
            model.to(memory_format=torch.channels_last)
        if not self.distributed:
            return model
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            return DistributedDataParallel(model, device_ids=[self.device.index])
        return DistributedDataParallel(model)

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of ``values`` over the ranks (itself in one process)."""
        if not self.distributed:
            return list(values)
        import torch.distributed as dist

        t = torch.tensor(values, dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return t.tolist()

    def broadcast(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self):
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    # --- the resumable state ---------------------------------------------------------------------
    def sidecar_path(self) -> Path:
        return Path(str(self.state_path) + ".json")

    def save_state(self, model, optimizer, scheduler, epoch: int, extra: dict) -> None:
        """Gather every rank's RNG states; rank 0 writes the state and its sidecar atomically."""
        rngs = [rng_state(self.generator, self.device)]
        if self.distributed:
            import torch.distributed as dist

            rngs = [None] * self.world_size
            dist.all_gather_object(rngs, rng_state(self.generator, self.device))
        if self.is_main and self.state_path is not None:
            state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None,
                     "scaler": self.precision.scaler.state_dict() if self.precision.scaler else None,
                     "rng": rngs, "epoch": epoch, "world_size": self.world_size, "identity": self.identity, **extra}
            with atomic_write(self.state_path) as f:
                torch.save(state, f)
            with atomic_write(self.sidecar_path(), "w", encoding="utf-8") as f:
                json.dump({"sha256": sha256sum(self.state_path), "epoch": epoch, "world_size": self.world_size,
                           "identity": self.identity}, f, indent=2)
        self.barrier()  # no rank runs ahead of a written state

    def check_state(self) -> dict | None:
        """The sidecar of the state at ``state_path`` when it may be resumed, None when there is none;
        ``ResumeError`` when it belongs to another recipe or world size, or fails its checksum."""
        if self.state_path is None or not self.state_path.exists():
            return None
        try:
            meta = json.loads(self.sidecar_path().read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ResumeError(f"resumable state {self.state_path} has no readable sidecar ({type(e).__name__}): "
                              "refusing to resume from an unverified file") from None
        if meta.get("identity") != self.identity:
            raise ResumeError(f"resumable state {self.state_path} was written by another recipe: "
                              f"{meta.get('identity')} is not this run's {self.identity}; refusing to resume it "
                              "(choose another --out folder for this recipe)")
        if meta.get("world_size") != self.world_size:
            raise ResumeError(f"resumable state {self.state_path} was written by {meta.get('world_size')} process(es), "
                              f"this run has {self.world_size}: resume with the same number of processes "
                              "(the data order and the random starts depend on it)")
        if sha256sum(self.state_path) != meta.get("sha256"):
            raise ResumeError(f"resumable state {self.state_path} does not match the SHA-256 in its sidecar "
                              "(damaged or edited): refusing to resume from it")
        return meta

    def preflight(self) -> dict | None:
        """Before any work: the sidecar of the state to resume (``check_state``), None when there is none;
        without ``resume``, ``ResumeError`` when a state already exists (it is never overwritten silently)."""
        if self.state_path is None:
            return None
        if not self.resume and self.state_path.exists():
            raise ResumeError(f"a resumable state already exists at {self.state_path}: pass --resume to continue "
                              "that run, or choose another --out folder")
        return self.check_state() if self.resume else None

    def load_state(self, model, optimizer, scheduler) -> dict | None:
        """With ``resume``: load the state into model, optimizer, scheduler and scaler, restore this rank's
        RNG states, and return the state (its ``epoch``, history...). None when there is nothing to resume.
        Without ``resume``, an existing state is refused rather than overwritten."""
        if self.preflight() is None:
            return None
        state = torch.load(self.state_path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if self.precision.scaler is not None and state.get("scaler") is not None:
            self.precision.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][self.rank], self.generator, self.device)
        return state
