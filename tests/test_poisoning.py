"""course_utils.poisoning (notebook 06b): triggers and ground truth, spectral signatures, activation clustering,
the DPA partition, certificate and its adaptive attacker."""
import itertools

import pytest
import torch
from torch import nn

from course_utils import models, poisoning


def planted(n=200, d=20, n_poison=20, offset=5.0, seed=0):
    """One class's features: an offset mean, anisotropic noise, and n_poison rows shifted along one direction."""
    g = torch.Generator().manual_seed(seed)
    r = offset + torch.randn(n, d, generator=g) * torch.linspace(1.0, 0.5, d)
    u = torch.randn(d, generator=g)
    r[:n_poison] += 6.0 * u / u.norm()
    return r


def test_spectral_scores_find_a_planted_rank_one_signal():
    r = planted()
    top = poisoning.spectral_signature(r).argsort(descending=True)[:30]  # 1.5 x the 20 planted rows
    assert (top < 20).sum() >= 18  # at least 90% of the planted rows among the removed


def test_spectral_scores_do_not_single_out_a_clean_set():
    clean = planted(n_poison=0)
    tail_clean = poisoning.tail_ratio(poisoning.spectral_signature(clean), 30)
    tail_planted = poisoning.tail_ratio(poisoning.spectral_signature(planted()), 30)
    assert tail_planted > 1.3 * tail_clean
    labels = torch.tensor([0] * 200 + [1] * 200)
    feats = torch.cat([planted(n_poison=0, seed=1), planted(seed=2)])
    assert poisoning.suspect_class(feats, labels, 30) == 1  # the class with the signal, not the clean one
    removed = poisoning.spectral_filter(feats, labels, 20)
    assert removed.sum() == 30 and removed[:200].sum() == 0 and removed[200:220].sum() >= 18
    assert poisoning.spectral_filter(feats, labels, 20, remove_from="every").sum() == 60


def test_spectral_scores_per_class_and_the_uncentred_variant():
    r = planted(offset=0.0)
    shift = r[:20].mean(0) - r[20:].mean(0)
    r = r - 20.0 * shift / shift.norm()  # the class mean lies against the poison's direction
    labels = torch.zeros(len(r), dtype=torch.long)
    assert torch.allclose(poisoning.spectral_scores(r, labels), poisoning.spectral_signature(r))
    assert (poisoning.spectral_signature(r).argsort(descending=True)[:30] < 20).sum() >= 18  # centred: found
    uncentred = poisoning.spectral_signature(r, centre=False)
    assert (uncentred.argsort(descending=True)[:30] < 20).sum() < 5  # uncentred: the poison scores lowest
    both = poisoning.spectral_scores(torch.cat([r, r]), torch.tensor([0] * 200 + [1] * 200))
    assert torch.allclose(both[:200], both[200:])  # computed per class
    with pytest.raises(ValueError, match="labels"):
        poisoning.spectral_scores(r, labels[:-1])


def test_remove_top_takes_the_highest_of_the_named_class():
    scores = torch.tensor([0.9, 0.1, 0.8, 0.7, 0.95, 0.2])
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    assert poisoning.remove_top(scores, labels, 2, [0]).tolist() == [True, False, True, True, False, False]


def test_activation_clustering_flags_a_separated_minority():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(400, 16, generator=g).abs()
    labels = torch.tensor([0] * 200 + [1] * 200)
    feats[:30] += 6.0  # a separate cluster of 30 in class 0
    flagged = poisoning.activation_clustering(feats, labels, num_classes=2)
    assert flagged[:30].float().mean() > 0.9 and flagged[30:200].float().mean() < 0.1
    assert torch.equal(flagged, poisoning.activation_clustering(feats, labels, num_classes=2))  # seeded


def test_features_name_their_layer():
    torch.manual_seed(0)
    model = models.mnist_small_cnn()
    x = torch.rand(5, 1, 28, 28)
    assert poisoning.features(model, x, poisoning.PENULTIMATE["mnist_small_cnn"]).shape == (5, 100)
    assert poisoning.features(model, x, "8").shape == (5, 10)  # the logits: what ART reads by default
    with pytest.raises(ValueError, match="no layer named 'fc'"):
        poisoning.features(model, x, "fc")


def test_poisoned_sets_carry_their_ground_truth():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(200, 1, 12, 12, generator=g), torch.randint(0, 4, (200,), generator=g)
    p = poisoning.poison_dataset(x, y, poisoning.Trigger.blend(0.2), 0.05, 1, torch.Generator().manual_seed(0))
    assert len(p.idx) == 10 and (y[p.idx] != 1).all() and (p.y[p.idx] == 1).all()
    assert torch.equal(p.x[~p.is_poison], x[~p.is_poison]) and not torch.equal(p.x[p.idx], x[p.idx])
    assert p.rate_in_target == 10 / int((p.y == 1).sum()) and "blend alpha=0.2" in str(p)
    a = poisoning.adaptive_blend(x, y, 0.05, 0.05, 1, generator=torch.Generator().manual_seed(0))
    assert len(a.idx) == 10 and len(a.cover) == 10 and not set(a.idx.tolist()) & set(a.cover.tolist())
    assert torch.equal(a.y[a.cover], y[a.cover]) and (a.y[a.idx] == 1).all()
    assert not torch.equal(a.x[a.cover], x[a.cover])  # the cover images carry (part of) the trigger
    x01, y01, idx = poisoning.poison(x, y, 0.05, 1, torch.Generator().manual_seed(0))  # notebook 01's call
    assert torch.all(x01[idx][..., 8:11, 8:11] == 1)


def test_partition_hash_is_deterministic_and_balanced():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (3000, 1, 8, 8), generator=g).float() / 255
    parts = poisoning.partition_ids(x, 10)
    assert torch.equal(parts, poisoning.partition_ids(x.clone(), 10))
    counts = torch.bincount(parts, minlength=10)
    assert counts.min() > 240 and counts.max() < 360  # 300 expected; about +-5 standard deviations
    mnist_like = (torch.rand(3000, 1, 28, 28, generator=g) < 0.13).float()  # ~100 lit pixels per image
    assert len(poisoning.sum_partition_ids(mnist_like, 1200).unique()) < 200  # ART's sum leaves most empty
    assert len(poisoning.partition_ids(mnist_like, 1200).unique()) > 1000


@pytest.mark.parametrize("k,num_classes", [(4, 3), (5, 3), (6, 2), (3, 4)])
def test_dpa_certificate_equals_brute_force(k, num_classes):
    for counts in itertools.product(range(k + 1), repeat=num_classes):
        if sum(counts) != k:
            continue
        v = torch.tensor(counts)
        pred, rho = poisoning.dpa_certificate(v[None])
        assert int(pred[0]) == min(i for i in range(num_classes) if counts[i] == max(counts))
        assert not poisoning.flip_search(v, int(rho[0])), counts  # nothing within rho flips it
        assert poisoning.flip_search(v, int(rho[0]) + 1), counts  # and rho is the largest such number


def test_dpa_certificate_rejects_bad_votes():
    with pytest.raises(ValueError, match="votes"):
        poisoning.dpa_certificate(torch.tensor([[0.5, 0.5]]))
    with pytest.raises(ValueError, match="votes"):
        poisoning.dpa_certificate(torch.tensor([3, 1]))


def tiny_build():
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


def test_no_certified_prediction_flips_under_placed_poison():
    """The adaptive attacker places each poisoned image in a partition of its choice (a copy of the test
    image with the runner-up's label): within the certificate, the prediction never changes."""
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 3, (300,), generator=g)
    x = (torch.rand(300, 1, 8, 8, generator=g) * 0.3)
    for c in range(3):
        x[y == c, :, c * 2:c * 2 + 3, :] += 0.6
    x = x.clamp(0, 1)
    k = 7
    parts = poisoning.partition_ids(x, k)
    ensemble = poisoning.train_partitions(x, y, k, tiny_build, epochs=5, lr=0.05, progress=False, parts=parts)
    v = poisoning.votes(ensemble, x[:20], num_classes=3)
    pred, rho = poisoning.dpa_certificate(v)
    assert (v.sum(1) == k).all() and (rho >= 1).any()
    tried = 0
    for i in torch.nonzero(rho >= 1).flatten()[:3].tolist():
        for copies in (1, int(rho[i])):  # spread over rho partitions, or all in one
            out = poisoning.experiments.attack_certificate(ensemble, parts, x, y, x[i], int(rho[i]), tiny_build, 5,
                                                           copies=copies, lr=0.05)
            assert out["poisoned images"] <= int(rho[i]) and out["poisoned partitions"] >= 1
            assert not out["flipped"], out
        tried += 1
    assert tried


def test_place_in_partition_lands_where_asked():
    img = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(0))
    for wanted in range(5):
        moved = poisoning.experiments.place_in_partition(img, 5, wanted)
        assert int(poisoning.partition_ids(moved[None], 5)[0]) == wanted
        assert (moved - img).abs().max() < 0.05


def test_knn_label_disagreement_flags_dirty_labels():
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 8, generator=g) * 5
    trusted_y = torch.arange(3).repeat_interleave(50)
    trusted = centres[trusted_y] + torch.randn(150, 8, generator=g)
    y = torch.tensor([0, 1, 2, 0, 0])
    x = centres[torch.tensor([0, 1, 2, 1, 2])] + torch.randn(5, 8, generator=g)  # the last two carry the wrong label
    assert poisoning.knn_label_disagreement(x, y, trusted, trusted_y, k=5).tolist() == [False, False, False, True, True]
    assert poisoning.knn_label_disagreement(torch.empty(0, 8), torch.empty(0, dtype=torch.long), trusted,
                                            trusted_y).shape == (0,)
