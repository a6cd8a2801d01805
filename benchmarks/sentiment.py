"""Quick-profile summary table of project p2 (a layered defense for a sentiment API).

    COURSE_DATA_DIR=../shared/data python benchmarks/sentiment.py [--profile quick] [--attack N]

Same recipe as notebooks/projects/p2_sentiment_api_layered_defense.ipynb: rt-polarity (Pang & Lee
2005, seeded split), the bag-of-words model (standard and IBP-certified training, Jia et al. 2019),
layer 1 = pyspellchecker repair + all-MiniLM-L6-v2 similarity flag at 5% FPR on validation, and
the adaptive greedy attacker (budget 3 words; typos / WordNet synonyms, |S(w)| <= 8).
Prints one row per system: clean accuracy, attack success per threat model, FPR, verified
accuracy (95% Clopper-Pearson intervals), and wall / CPU time. Target: the whole run < 10 minutes
on a 2-core CPU. Published for comparison (Jia et al. 2019 abstract, IMDB, counter-fitted synonym
sets, long reviews): about 75% adversarial accuracy for IBP-trained models against 8% for normally
trained ones; not a like-for-like comparison. Nothing is asserted. Results also go to
``cache_dir()/benchmarks/sentiment_<profile>.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

import pandas as pd
import torch

from course_utils.config import cache_dir, describe, get_profile, seed_everything
from course_utils.data import load_dataset
from course_utils.text import attacks, experiment, ibp, sanitize, wordnet
from course_utils.text.model import BagOfWordsClassifier, train_text_model
from course_utils.text.pipeline import DefendedPipeline
from course_utils.text.vocab import Vocab, tokenize

BUDGET, MAX_SYNONYMS, TARGET_FPR = 3, 8, 0.05


def markdown(df: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (without the optional tabulate package)."""
    lines = ["| " + " | ".join(map(str, df.columns)) + " |", "|" + " --- |" * len(df.columns)]
    return "\n".join(lines + ["| " + " | ".join(map(str, row)) + " |" for row in df.itertuples(index=False)])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--attack", type=int, default=None, help="sentences attacked (default: the profile's)")
    args = parser.parse_args()
    P = get_profile(args.profile)
    os.environ["COURSE_PROFILE"] = P.name  # so that describe() reports the profile this run uses
    n_train, min_freq = P.pick(600, 8529, 8529), P.pick(1, 2, 2)
    epochs, cert_epochs = P.pick(2, 5, 10), P.pick(3, 8, 30)
    n_eval, n_val, n_ref = P.pick(60, 1067, 1067), P.pick(60, 1066, 1066), P.pick(100, 2000, 8529)
    n_attack = args.attack or P.pick(6, 150, 1067)
    wall, cpu = time.perf_counter(), time.process_time()
    print(describe(), "|", platform.processor() or platform.machine())

    seed_everything(0)
    train, val, test = (load_dataset("rt-polarity", s) for s in ("train", "validation", "test"))
    train_tokens, y_train = [tokenize(t) for t in train.texts[:n_train]], train.targets[:n_train]
    test_tokens, y_test = [tokenize(t) for t in test.texts[:n_eval]], test.targets[:n_eval]
    vocab = Vocab.build(train_tokens, min_freq=min_freq)
    synonyms = wordnet.restrict_synonyms(wordnet.load_wordnet_synonyms(), vocab, MAX_SYNONYMS)
    table = ibp.substitution_table(vocab, synonyms)

    t = time.perf_counter()
    seed_everything(0)
    model = BagOfWordsClassifier(len(vocab))
    train_text_model(model, vocab, train_tokens, y_train, epochs=epochs, batch_size=128, progress=False)
    seed_everything(0)
    cert_model = BagOfWordsClassifier(len(vocab))
    train_text_model(cert_model, vocab, train_tokens, y_train, epochs=cert_epochs, batch_size=128, progress=False,
                     loss_fn=ibp.make_certified_loss(table, kappa=0.8))
    train_s = time.perf_counter() - t

    t = time.perf_counter()
    spell = sanitize.SpellRepair(keep=vocab.stoi)
    try:
        encoder, encoder_name = sanitize.minilm_encoder(), "all-MiniLM-L6-v2"
    except ImportError:
        encoder, encoder_name = sanitize.bow_encoder(model, vocab), "bag of embeddings (fallback)"
    ood = sanitize.OODDetector(encoder, train.texts[:n_ref])
    ood.fit_threshold(val.texts[:n_val], TARGET_FPR)
    layer1_s = time.perf_counter() - t

    candidates = {"typo": attacks.make_candidates("typo"), "synonym": attacks.make_candidates("synonym", synonyms)}
    systems = {
        "standard model": DefendedPipeline(model, vocab),
        "+ layer 1 (spell repair, OOD flag)": DefendedPipeline(model, vocab, spell=spell, ood=ood),
        "certified model (IBP)": DefendedPipeline(cert_model, vocab, table=table),
        "all layers": DefendedPipeline(cert_model, vocab, spell=spell, ood=ood, table=table),
    }
    rows = [experiment.evaluate_system(name, pipe, test_tokens, y_test, candidates, BUDGET, table, n_attack, progress=False)[0]
            for name, pipe in systems.items()]
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    table_md = markdown(pd.DataFrame(rows))
    print(f"\nthreat model: greedy adaptive attacker, <= {BUDGET} words edited, {n_attack} test reviews attacked; "
          f"clean / verified / FPR on {n_eval} test reviews; flag: {encoder_name}, threshold at {TARGET_FPR:.0%} "
          f"FPR on {n_val} validation reviews\n")
    print(table_md)
    print(f"\ntraining {train_s:.0f} s, layer-1 set-up {layer1_s:.0f} s; total wall {wall:.0f} s, process CPU {cpu:.0f} s "
          f"(wall time is inflated on a shared machine); threads {torch.get_num_threads()}")
    out = cache_dir() / "benchmarks" / f"sentiment_{P.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"profile": P.name, "rows": rows, "wall_s": wall, "cpu_s": cpu, "train_s": train_s,
                               "n_attack": n_attack, "n_eval": n_eval, "encoder": encoder_name}, indent=2))


if __name__ == "__main__":
    main()
