"""The printed tables the chapters share: no ``None``/``NaN`` cells, numbers rounded."""

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
