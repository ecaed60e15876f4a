"""Plots and tables the chapters share (matplotlib; pandas for tables).

Nothing in the rest of ``ltkd`` imports this module, so the package trains without a display.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .data import rank_groups, shot_groups

__all__ = [
    "plot_counts",
    "plot_per_class",
    "plot_confusion",
    "group_table",
    "mean_std_table",
    "results_note",
    "plot_test_curves",
    "GROUP_COLOURS",
]

GROUP_COLOURS = {"head": "#1f77b4", "middle": "#ff7f0e", "tail": "#d62728"}


def _group_of(counts) -> list[str]:
    g = rank_groups(counts)
    out = [""] * len(counts)
    for name, idx in g.items():
        for i in idx:
            out[i] = name
    return out


def plot_counts(counts, classes: Sequence[str] | None = None, ax=None, title: str = "Training images per class",
                log: bool = True):  # fmt: skip
    """Bar plot of class counts (log scale), bars coloured head / middle / tail by rank."""
    import matplotlib.pyplot as plt

    counts = np.asarray(counts)
    classes = list(classes) if classes is not None else [str(i) for i in range(len(counts))]
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6, 0.55 * len(counts)), 3.6))
    groups = _group_of(counts)
    ax.bar(range(len(counts)), counts, color=[GROUP_COLOURS[g] for g in groups])
    for i, c in enumerate(counts):
        ax.text(i, c, f"{c:,}", ha="center", va="bottom", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_xticks(range(len(counts)), classes, rotation=45 if len(counts) <= 20 else 90, ha="right", fontsize=8)
    ax.set_ylabel("images" + (" (log scale)" if log else ""))
    ax.set_title(title)
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=f"{g} third") for g, c in GROUP_COLOURS.items()], fontsize=8)
    return ax


def plot_per_class(accs: dict[str, Sequence[float]], counts, classes: Sequence[str] | None = None, ax=None,
                   title: str = "Per-class test accuracy against training frequency"):  # fmt: skip
    """Per-class accuracy of one or more models (dict label → accuracies) against class count (log x)."""
    import matplotlib.pyplot as plt

    counts = np.asarray(counts)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for label, acc in accs.items():
        acc = np.asarray([np.nan if a is None else a for a in acc], float)
        order = np.argsort(counts)
        ax.plot(counts[order], acc[order], "o-", label=label, alpha=0.85)
    ax.set_xscale("log")
    if classes is not None and len(set(counts.tolist())) == len(counts):  # names on a top axis, off the data
        top = ax.secondary_xaxis("top")
        top.set_xticks(counts, [str(c) for c in classes], rotation=45, ha="left", fontsize=7)
        top.minorticks_off()
    elif classes is not None:  # classes of equal size share an x: name the points of the first model
        first = np.asarray([np.nan if a is None else a for a in next(iter(accs.values()))], float)
        for i, name in enumerate(classes):
            ax.annotate(str(name), (counts[i], first[i]), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    return ax


def plot_confusion(cm: np.ndarray, classes: Sequence[str] | None = None, ax=None, title: str = "Confusion matrix",
                   normalise: bool = True, xlabel: str = "predicted", ylabel: str = "true",
                   colorbar_label: str | None = None, vmax: float | None = None):  # fmt: skip
    """Confusion matrix (rows: true class, ordered as given; columns: predicted), row-normalised.

    Any row-by-column matrix over the classes can be drawn with it (e.g. a teacher's mean soft labels): name its
    axes with ``xlabel`` / ``ylabel`` and its colour bar with ``colorbar_label``; ``vmax`` is the colour scale's
    top (default 1 for a row-normalised matrix, else its largest entry)."""
    import matplotlib.pyplot as plt

    cm = np.asarray(cm, float)
    if normalise:
        cm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(cm)
    classes = list(classes) if classes is not None else [str(i) for i in range(n)]
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * n + 2, 0.5 * n + 1.5))
    top = vmax if vmax is not None else (1.0 if normalise else float(cm.max()))
    im = ax.imshow(cm, cmap="Blues", vmin=0, vmax=top)
    if n <= 20:
        for i in range(n):
            for j in range(n):
                if cm[i, j] >= 0.01:
                    ax.text(j, i, f"{cm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                            color="white" if cm[i, j] > 0.6 * top else "black")  # fmt: skip
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    bar = ax.figure.colorbar(im, ax=ax, fraction=0.046)
    if colorbar_label:
        bar.set_label(colorbar_label)
    return ax


GROUP_KEYS = ("overall", "balanced", "many", "medium", "few", "head", "middle", "tail")


def group_table(reports: dict[str, dict], keys: Sequence[str] = GROUP_KEYS, percent: bool = True):
    """A DataFrame: one row per model (dict label → accuracy report), one column per group.

    Numbers are rounded to 0.1 (percent); an empty group (``None``, e.g. no few-shot class) shows as "–".
    """
    import pandas as pd

    rows = {}
    for label, r in reports.items():
        rows[label] = {k: (np.nan if r.get(k) is None else float(100 * r[k] if percent else r[k])) for k in keys}
    df = pd.DataFrame.from_dict(rows, orient="index", dtype=float)
    if percent:
        df = df.round(1)
    if df.isna().any().any():
        df = df.astype(object).where(df.notna(), "–")
    return df


def mean_std_table(runs: dict[str, list[dict]], keys: Sequence[str] = GROUP_KEYS):
    """A DataFrame of "mean ± std" strings (percent) over seeds: runs = label → list of reports.

    Empty groups (None in every seed) show as "–". std is the sample standard deviation (n − 1).
    """
    import pandas as pd

    rows = {}
    for label, reps in runs.items():
        row = {}
        for k in keys:
            vals = [r[k] for r in reps if r.get(k) is not None]
            if not vals:
                row[k] = "–"
                continue
            v = 100 * np.asarray(vals, float)
            sd = v.std(ddof=1) if len(v) > 1 else 0.0
            row[k] = f"{v.mean():.1f} ± {sd:.1f}"
        row["seeds"] = len(reps)
        rows[label] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def groups_note(counts) -> str:
    """One line saying how the groups of ``counts`` were formed and their sizes."""
    s = shot_groups(counts)
    r = rank_groups(counts)
    return (
        f"many/medium/few = {len(s['many'])}/{len(s['medium'])}/{len(s['few'])} classes "
        f"(>100, 20–100, <20 training images); head/middle/tail thirds by rank = "
        f"{len(r['head'])}/{len(r['middle'])}/{len(r['tail'])} classes"
    )


def results_note(doc: dict, width: int = 110) -> str:
    """A results file's ``note`` (how and where its runs were made), wrapped for printing above its
    table; ``""`` when the file has none. The note is part of the result, so the chapters show it."""
    import textwrap

    note = doc.get("note") if isinstance(doc, dict) else None
    return textwrap.fill(f"Note from the results file: {note}", width) if note else ""


# --------------------------------------------------------------------------------------
# Chapter 2: embedding pictures (UMAP scatter, per-class spread)
# --------------------------------------------------------------------------------------
def umap_2d(emb, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "cosine"):
    """A seeded 2-D UMAP (umap-learn) of ``emb`` (N×D); returns (N×2 array, fitted reducer).

    Fit on a subsample (≤ ~2000 points keeps it to seconds on a CPU); ``reducer.transform`` places
    more points in the same picture.
    """
    import umap

    reducer = umap.UMAP(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, random_state=seed)
    xy = reducer.fit_transform(np.asarray(emb, dtype=np.float32))
    return xy, reducer


def plot_embedding_2d(xy, labels, counts, split=None, classes: Sequence[str] | None = None, ax=None,
                      title: str = "UMAP of penultimate embeddings"):  # fmt: skip
    """Scatter of 2-D points coloured by class; tail-third classes drawn larger with a black edge.

    ``split`` (optional, per point: True for test) draws test points as crosses and training points
    as dots. Class names in the legend carry their training counts.
    """
    import matplotlib.pyplot as plt

    xy = np.asarray(xy)
    labels = np.asarray(labels)
    counts = np.asarray(counts)
    c = len(counts)
    classes = list(classes) if classes is not None else [str(i) for i in range(c)]
    tail = set(rank_groups(counts)["tail"].tolist())
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 5.5))
    cmap = plt.get_cmap("tab10" if c <= 10 else "tab20")
    split = np.zeros(len(xy), bool) if split is None else np.asarray(split, bool)
    for j in np.argsort(-counts):  # head first, tail on top
        for is_test, marker in ((False, "o"), (True, "x")):
            sel = (labels == j) & (split == is_test)
            if not sel.any():
                continue
            big = j in tail
            kw = dict(s=28 if big else 7, alpha=0.9 if big else 0.45, color=cmap(j % cmap.N), marker=marker)
            if big and marker == "o":
                kw.update(edgecolors="black", linewidths=0.6)
            ax.scatter(xy[sel, 0], xy[sel, 1], label=f"{classes[j]} ({counts[j]:,}){' tail' if big else ''}"
                       if not is_test else None, **kw)  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, markerscale=1.2, loc="best", framealpha=0.7, title="class (train images)", title_fontsize=7)
    return ax


def plot_spread(spreads: dict[str, Sequence[float]], counts, ax=None, ylabel: str = "mean angle to class centre (°)",
                title: str = "Per-class spread of the embedding against class count"):  # fmt: skip
    """One line per model (label → per-class values) against training count (log x)."""
    import matplotlib.pyplot as plt

    counts = np.asarray(counts)
    order = np.argsort(counts)
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 4))
    for label, s in spreads.items():
        s = np.asarray(s, float)
        ax.plot(counts[order], s[order], "o-", label=label, alpha=0.85)
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log scale)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    return ax


def plot_test_curves(histories: dict[str, Sequence[dict]], groups: Sequence[str] = ("overall", "tail"), axes=None,
                     stage_epochs: dict[str, int] | None = None, title: str = "Test top-1 during training"):  # fmt: skip
    """Test accuracy against epoch, one line per run (label → its per-epoch log, ``metrics["history"]``).

    Only rows evaluated on the test set count (``ltkd train --eval-every N``); one panel per group
    (``overall``, ``head``, ``middle`` or ``tail``). Stages follow each other on the x axis, a dotted
    line where the next begins: a stage starts after the epochs of the stages before it in
    ``stage_epochs`` (stage name → epochs, in order; ``metrics["stage_epochs"]``), or, without it,
    after the last epoch logged in the run's previous stage.
    """
    import matplotlib.pyplot as plt

    key = {"overall": "test_acc", "head": "test_head", "middle": "test_middle", "tail": "test_tail"}
    bad = [g for g in groups if g not in key]
    if bad:
        raise ValueError(f"unknown group(s) {bad}; choose from {', '.join(key)}")
    if axes is None:
        _, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False)
        axes = axes[0]
    fixed, total = {}, 0
    for name, n in (stage_epochs or {}).items():
        fixed[name], total = total, total + n
    starts: set[int] = set()
    for label, hist in histories.items():
        offset, last_epoch, stage, xs, ys = 0, 0, None, [], {g: [] for g in groups}
        for row in hist:  # x = epochs of all earlier stages + this row's epoch
            if row.get("stage") != stage:
                offset, stage = fixed.get(row.get("stage"), offset + last_epoch), row.get("stage")
                if offset:
                    starts.add(offset)
            last_epoch = row["epoch"]
            if row.get("test_acc") is not None:
                xs.append(offset + row["epoch"])
                for g in groups:
                    v = row.get(key[g])
                    ys[g].append(np.nan if v is None else 100 * v)
        for ax, g in zip(axes, groups):
            ax.plot(xs, ys[g], "o-", ms=3, label=label, alpha=0.85)
    for ax, g in zip(axes, groups):
        for x in sorted(starts):
            ax.axvline(x, color="grey", ls=":", lw=1)
        ax.set_xlabel("epoch (stages in sequence)")
        ax.set_ylabel(f"test top-1, {g if g == 'overall' else g + ' third'} (%)")
        ax.grid(alpha=0.3)
    # one legend for all panels, below them, where it hides no point of any curve
    handles, labels = axes[0].get_legend_handles_labels()
    axes[0].figure.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), fontsize=8,
                          ncol=min(2, max(1, len(labels))), frameon=False)  # fmt: skip
    axes[0].set_title(title, fontsize=10, loc="left")
    return axes


def plot_feature_maps(fmap, highlight=(), ax=None, title: str = "", ncols: int | None = None,
                      vmax: float | None = None, cmap: str = "viridis", colour: str = "#d62728"):  # fmt: skip
    """All channels of one feature map (C×h×w) as a grid of small images; ``highlight`` channels
    are framed (chapter 3: the channels H2T copies from the donor). Returns the image artist."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    f = np.asarray(fmap.detach().cpu() if hasattr(fmap, "detach") else fmap, dtype=float)
    c, h, w = f.shape
    ncols = ncols or int(np.ceil(np.sqrt(c)))
    nrows = int(np.ceil(c / ncols))
    mosaic = np.full((nrows * (h + 1) + 1, ncols * (w + 1) + 1), np.nan)
    for i in range(c):
        r, q = divmod(i, ncols)
        mosaic[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + q * (w + 1) : 1 + q * (w + 1) + w] = f[i]
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4 * nrows / ncols))
    cm = plt.get_cmap(cmap).copy()
    cm.set_bad("white")
    im = ax.imshow(mosaic, cmap=cm, vmin=0 if f.min() >= 0 else None, vmax=vmax, interpolation="nearest")
    for i in np.asarray(highlight, dtype=int).tolist():
        r, q = divmod(i, ncols)
        ax.add_patch(Rectangle((q * (w + 1) + 0.5 - 0.5, r * (h + 1) + 0.5 - 0.5), w + 1, h + 1, fill=False,
                               edgecolor=colour, linewidth=1.6))  # fmt: skip
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    return im
