"""Every check accepts a correct answer and rejects typical mistakes."""

import numpy as np
import torch.nn.functional as F

from ltkd import exercises as X


def test_check_lt_counts():
    good = lambda n, c, imb: [int(n * (1 / imb) ** (i / (c - 1))) for i in range(c)]
    assert X.check_lt_counts(good)
    assert not X.check_lt_counts(lambda n, c, imb: good(n, c, imb)[::-1])
    assert not X.check_lt_counts(lambda n, c, imb: [round(n * imb ** (-i / (c - 1))) for i in range(c)])
    assert not X.check_lt_counts(lambda n, c, imb: 1 / 0)


def test_check_sampler_probs():
    assert X.check_sampler_probs(lambda n, q: n**q / (n**q).sum())
    assert not X.check_sampler_probs(lambda n, q: n**q)  # not normalised
    assert not X.check_sampler_probs(lambda n, q: np.ones(len(n)) / len(n))


def test_check_shot_groups():
    good = lambda c: {"many": np.flatnonzero(c > 100), "medium": np.flatnonzero((c >= 20) & (c <= 100)),
                      "few": np.flatnonzero(c < 20)}  # fmt: skip
    off = lambda c: {"many": np.flatnonzero(c >= 100), "medium": np.flatnonzero((c >= 20) & (c < 100)),
                     "few": np.flatnonzero(c < 20)}  # fmt: skip
    assert X.check_shot_groups(good)
    assert not X.check_shot_groups(off)


def test_check_gcl_loss():
    def good(cos, y, a, d, s, eps, m):
        return F.cross_entropy(s * (cos - eps * d.abs() * a - m * F.one_hot(y, cos.shape[1])), y)

    def no_abs(cos, y, a, d, s, eps, m):
        return F.cross_entropy(s * (cos - eps * d * a - m * F.one_hot(y, cos.shape[1])), y)

    assert X.check_gcl_loss(good)
    assert not X.check_gcl_loss(no_abs)


def test_check_fusion():
    def good(f1, f2, ch):
        f1[:, ch] = f2[:, ch]
        return f1

    assert X.check_fusion(good)
    assert not X.check_fusion(lambda f1, f2, ch: f2)
    assert not X.check_fusion(lambda f1, f2, ch: f1)


def test_check_kd_loss():
    good = lambda zs, zt, t: F.kl_div(F.log_softmax(zs / t, 1), F.softmax(zt / t, 1), reduction="batchmean") * t * t
    assert X.check_kd_loss(good)
    assert not X.check_kd_loss(lambda zs, zt, t: good(zs, zt, t) / (t * t))


def test_check_label_revision():
    def good(p, y, eta):
        beta = eta / (p.max(1).values - p.gather(1, y[:, None]).squeeze(1) + 1)
        return beta[:, None] * p + (1 - beta[:, None]) * F.one_hot(y, p.shape[1])

    def global_beta(p, y, eta):
        return eta * p + (1 - eta) * F.one_hot(y, p.shape[1])

    assert X.check_label_revision(good)
    assert not X.check_label_revision(global_beta)
    assert not X.check_label_revision(lambda p, y, eta: p)
