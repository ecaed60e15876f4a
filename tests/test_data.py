import numpy as np
import pytest
import torch

from ltkd.data import (
    ClassSampler,
    ImageData,
    TensorLoader,
    augment,
    class_sampler_weights,
    long_tail,
    lt_counts,
    rank_groups,
    shot_groups,
)
from ltkd.errors import LtkdError


@pytest.mark.parametrize(
    "n_max,c,imb,total,smallest",
    [
        (5000, 10, 100, 12406, 50),
        (5000, 10, 50, 13996, 100),
        (5000, 10, 10, 20431, 500),
        (500, 100, 100, 10847, 5),
        (500, 100, 50, 12608, 10),
        (500, 100, 10, 19573, 50),
    ],
)
def test_published_cifar_lt_sizes(n_max, c, imb, total, smallest):
    counts = lt_counts(n_max, c, imb)
    assert counts.sum() == total
    assert counts.min() == smallest and counts[0] == n_max
    assert (np.diff(counts) <= 0).all()


def test_step_profile_and_balanced():
    assert lt_counts(100, 4, 10, "step").tolist() == [100, 100, 10, 10]
    assert lt_counts(100, 5, 1).tolist() == [100] * 5


def test_bad_imbalance_and_profile():
    with pytest.raises(LtkdError, match="≥ 1"):
        lt_counts(100, 10, 0.5)
    with pytest.raises(LtkdError, match="profile"):
        lt_counts(100, 10, 10, "linear")


def test_long_tail_refuses_counts_the_data_do_not_have():
    d = _fake(n_per=50)
    assert long_tail(d, 10, n_max=50).counts.tolist() == lt_counts(50, 4, 10).tolist()
    with pytest.raises(LtkdError, match=r"class 0 has 50 images but this long tail \(IF 10, n_max 80, exp\) asks for 80"):
        long_tail(d, 10, n_max=80)  # capped, it would be a tail of 50/37/17/8, not IF 10
    with pytest.raises(LtkdError, match="class 0 has 50 images"):
        long_tail(d, 1, n_max=51)


def _fake(n_per=50, c=4, hw=8, ch=1):
    x = torch.randint(0, 256, (n_per * c, ch, hw, hw), dtype=torch.uint8)
    y = torch.arange(c).repeat_interleave(n_per)
    return ImageData(x, y, [str(i) for i in range(c)], "fake")


def test_long_tail_counts_and_seeded_selection():
    d = _fake()
    lt1 = long_tail(d, 10, seed=0)
    lt2 = long_tail(d, 10, seed=0)
    lt3 = long_tail(d, 10, seed=1)
    assert lt1.counts.tolist() == lt_counts(50, 4, 10).tolist()
    assert torch.equal(lt1.images, lt2.images)  # same call, same images
    assert not torch.equal(lt1.images, lt3.images)
    assert long_tail(d, 1, n_max=20).counts.tolist() == [20] * 4  # balanced with a cap


def test_shot_groups_from_counts():
    counts = np.array([500, 150, 101, 100, 50, 20, 19, 5])
    g = shot_groups(counts)
    assert g["many"].tolist() == [0, 1, 2]
    assert g["medium"].tolist() == [3, 4, 5]
    assert g["few"].tolist() == [6, 7]
    # CIFAR-100-LT IF 100: 35 / 35 / 30 classes
    g = shot_groups(lt_counts(500, 100, 100))
    assert (len(g["many"]), len(g["medium"]), len(g["few"])) == (35, 35, 30)
    # 10 classes, IF 100, n_max 6000: no few-shot class, so thirds by rank are needed
    c10 = lt_counts(6000, 10, 100)
    assert len(shot_groups(c10)["few"]) == 0
    r = rank_groups(c10)
    assert r["head"].tolist() == [0, 1, 2, 3] and r["tail"].tolist() == [7, 8, 9]


def test_rank_groups_follow_counts_not_labels():
    r = rank_groups([5, 500, 50])
    assert r["head"].tolist() == [1] and r["tail"].tolist() == [0]


@pytest.mark.parametrize("kind,q", [("class-balanced", 0.0), ("sqrt", 0.5)])
def test_sampler_class_frequencies(kind, q):
    counts = np.array([1000, 100, 10])
    labels = torch.arange(3).repeat_interleave(torch.tensor(counts))
    s = ClassSampler.of(kind, labels)
    g = torch.Generator().manual_seed(0)
    idx = torch.cat([s.epoch(g) for _ in range(20)])
    freq = np.bincount(labels[idx].numpy(), minlength=3) / len(idx)
    want = counts**q / (counts**q).sum()
    np.testing.assert_allclose(freq, want, atol=0.01)
    assert np.allclose(class_sampler_weights(counts, kind), want)


def test_instance_sampler_is_a_permutation():
    labels = torch.tensor([0] * 30 + [1] * 5)
    s = ClassSampler.of("instance", labels)
    idx = s.epoch(torch.Generator().manual_seed(0))
    assert sorted(idx.tolist()) == list(range(35))


def test_augment_keeps_content_and_shape():
    x = torch.arange(2 * 1 * 4 * 4, dtype=torch.uint8).view(2, 1, 4, 4)
    g = torch.Generator().manual_seed(0)
    a = augment(x, pad=0, flip=True, generator=g)
    for i in range(2):  # each image is itself or its mirror
        assert torch.equal(a[i], x[i]) or torch.equal(a[i], x[i].flip(2))
    c = augment(x, pad=2, flip=False, generator=g)
    assert c.shape == x.shape
    # a crop of the zero-padded image: every non-zero value comes from the same image
    for i in range(2):
        vals = set(c[i].unique().tolist()) - {0}
        assert vals <= set(x[i].unique().tolist())


def test_tensor_loader_batches_and_normalises():
    d = _fake(n_per=10, c=3)
    ld = TensorLoader(d, batch_size=8, train=False)
    xs, ys, idx = zip(*ld)
    assert [len(y) for y in ys] == [8, 8, 8, 6]
    assert torch.equal(torch.cat(idx), torch.arange(30))
    x = torch.cat(xs)
    ref = (d.images.float() / 255 - d.mean[0]) / d.std[0]
    torch.testing.assert_close(x, ref)


def test_digits_source(digits):
    train, test = digits
    assert train.images.dtype == torch.uint8 and train.images.shape[1:] == (1, 8, 8)
    assert train.num_classes == 10 and len(train) + len(test) == 1797
    assert set(test.counts.tolist()) <= set(range(30, 40))


def test_bad_data_set_names():
    from ltkd.data import load

    with pytest.raises(LtkdError, match="unknown data set"):
        load("mnist-of-cats")
    with pytest.raises(LtkdError, match="no such folder"):
        load("/nonexistent/folder")


def test_fashion_mnist_missing_message(monkeypatch, tmp_path):
    import ltkd.data as D

    monkeypatch.setattr(D.sources, "DEBIAN_FASHION_MNIST", tmp_path / "nope")
    monkeypatch.setenv("LTKD_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LTKD_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(LtkdError) as e:
        D.load("fashion-mnist", download=False)
    msg = str(e.value)
    assert "looked in" in msg and "dataset-fashion-mnist" in msg and str(tmp_path) in msg


def test_imagefolder_reads_class_tree(tmp_path, monkeypatch):
    from PIL import Image

    from ltkd.data import load

    monkeypatch.setenv("LTKD_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.RandomState(0)
    for split, n in (("train", 5), ("test", 2)):
        for cls in ("cat", "ant"):
            (tmp_path / "imgs" / split / cls).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(rng.randint(0, 255, (6, 6, 3), dtype=np.uint8)).save(
                    tmp_path / "imgs" / split / cls / f"{i}.png"
                )
    tr, te = load(str(tmp_path / "imgs"))
    assert tr.classes == ["ant", "cat"] and tr.counts.tolist() == [5, 5] and te.counts.tolist() == [2, 2]
    assert tr.images.shape == (10, 3, 6, 6)
    tr2, _ = load(str(tmp_path / "imgs"))  # second load comes from the cache, identical
    assert torch.equal(tr.images, tr2.images)
    for i in range(5, 8):  # images added inside a class folder (the top folder's time does not change)
        Image.fromarray(rng.randint(0, 255, (6, 6, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "train" / "cat" / f"{i}.png")
    tr3, _ = load(str(tmp_path / "imgs"))
    assert tr3.counts.tolist() == [5, 8]
    (tmp_path / "imgs" / "train" / "ant" / "0.png").unlink()
    assert load(str(tmp_path / "imgs"))[0].counts.tolist() == [4, 8]
    (tmp_path / "imgs" / "test" / "cat" / "9.jpg").write_bytes(b"not an image")  # the error names the file
    with pytest.raises(LtkdError, match=r"test/cat/9.jpg: not a readable image \(UnidentifiedImageError\)"):
        load(str(tmp_path / "imgs"))


def _tiny(labels, classes=("a", "b", "c")):
    return ImageData(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), torch.as_tensor(labels), list(classes), "t")


def test_subset_takes_positions_or_a_boolean_mask():
    d = _tiny([0, 0, 1, 0, 2, 2])
    assert d.subset(d.labels == 2).labels.tolist() == [2, 2]  # a mask, not positions 0 and 1
    assert d.subset(np.array([True, False, True, False, False, False])).labels.tolist() == [0, 1]
    assert d.subset([4, 2]).labels.tolist() == [2, 1] and len(d.subset([])) == 0
    with pytest.raises(LtkdError, match="one entry per image"):
        d.subset(torch.tensor([True, False]))
    with pytest.raises(LtkdError, match="integer positions or a boolean mask"):
        d.subset(np.array([0.0, 1.0]))


def test_image_data_checks_its_labels():
    with pytest.raises(LtkdError, match=r"labels must lie in 0..2"):
        _tiny([0, 1, 1, 2, 5, 5])
    with pytest.raises(LtkdError, match=r"labels must lie in 0..2"):
        _tiny([0, -1])
    with pytest.raises(LtkdError, match="integer tensor"):
        _tiny(torch.tensor([0.0, 1.0]))


def test_sampler_never_draws_a_class_without_images():
    g = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 0, 2, 2, 2])  # class 1 has no images
    s = ClassSampler(labels, [0, 1, 1], num_classes=3)
    assert labels[s.epoch(g)].tolist() == [2] * 6  # class 1's weight goes to the classes that have images
    cb = ClassSampler.of("class-balanced", torch.tensor([0, 0, 1, 1]), num_classes=3)  # the last class empty
    assert set(torch.tensor([0, 0, 1, 1])[cb.epoch(g)].tolist()) <= {0, 1}
    with pytest.raises(LtkdError, match="no images"):
        ClassSampler(labels, [0, 1, 0])
    with pytest.raises(LtkdError, match="out of range"):
        ClassSampler(labels, num_classes=2)
