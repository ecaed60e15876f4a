"""The printed tables the chapters share: no ``None``/``NaN`` cells, numbers rounded; the figures name their axes."""

import numpy as np

from ltkd import viz


def test_group_table_shows_empty_groups_as_a_dash_and_rounds():
    df = viz.group_table({"CE": {"overall": 0.73, "many": 0.80049, "few": None},
                          "cRT": {"overall": 0.5, "many": 0.123456, "few": None}}, keys=("overall", "many", "few"))
    assert df.loc["CE", "few"] == "–" and df.loc["cRT", "few"] == "–"
    assert df.loc["CE", "many"] == 80.0 and df.loc["cRT", "many"] == 12.3
    assert "None" not in df.to_string() and "nan" not in df.to_string().lower()


def test_group_table_stays_numeric_without_empty_groups():
    df = viz.group_table({"CE": {"overall": 0.7312, "tail": 0.6}}, keys=("overall", "tail"))
    assert list(df.dtypes) == [float, float]
    assert df.loc["CE", "overall"] == 73.1


def test_plot_confusion_names_its_axes_and_colour_scale():
    import matplotlib

    matplotlib.use("Agg")
    m = np.array([[0.0, 0.3, 0.1], [0.2, 0.0, 0.05], [0.1, 0.1, 0.0]])
    ax = viz.plot_confusion(m, ["a", "b", "c"], normalise=False, xlabel="wrong class", ylabel="true class",
                            colorbar_label="share", vmax=float(m.max()))  # fmt: skip
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("wrong class", "true class")
    im = ax.get_images()[0]
    assert im.get_clim() == (0.0, 0.3)
    assert ax.figure.axes[-1].get_ylabel() == "share"
    default = viz.plot_confusion(np.eye(3) * 5, ["a", "b", "c"])
    assert default.get_images()[0].get_clim() == (0.0, 1.0) and default.get_xlabel() == "predicted"


def test_plot_per_class_names_classes_on_a_top_axis_off_the_points():
    import matplotlib

    matplotlib.use("Agg")
    counts, names = [500, 100, 20], ["head", "mid", "tail"]
    ax = viz.plot_per_class({"CE": [0.9, 0.5, None], "cRT": [0.8, 0.7, 0.6]}, counts, names)
    assert not ax.texts  # no annotation drawn over the data
    top = [c for c in ax.child_axes][0]
    assert [t.get_text() for t in top.get_xticklabels()] == names
    balanced = viz.plot_per_class({"CE": [0.9, 0.5, 0.4]}, [100, 100, 100], names)
    assert [t.get_text() for t in balanced.texts] == names  # equal counts: the points are named instead
