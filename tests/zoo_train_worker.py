"""``zoo.train_recipe`` for ``tests/test_distributed.py``, alone or under torchrun (not a test file).

    python tests/zoo_train_worker.py OUT [--epochs 2] [--fixed-start] [--kill-after K] [--resume]

Trains the smoke MNIST recipe into OUT. ``--fixed-start``: the training attack is FGSM without a
random start, so one process and N processes draw nothing rank-dependent and must agree.
``--kill-after K``: the process sends itself SIGKILL (kill -9) once epoch K's state is written.
"""
import argparse
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from course_utils import zoo  # noqa: E402
from course_utils.attacks import AttackConfig  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--fixed-start", action="store_true")
    ap.add_argument("--kill-after", type=int, default=None)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    r = zoo.run_recipe("mnist", "smoke", args.epochs)
    if args.fixed_start:
        r = {**r, "train": r["train"].replace(attack=AttackConfig(0.3, kind="fgsm"))}

    def on_epoch(epoch, run):
        if epoch == args.kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    zoo.train_recipe("mnist", "smoke", args.out, resume=args.resume, r=r, on_epoch=on_epoch, progress=False)
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
