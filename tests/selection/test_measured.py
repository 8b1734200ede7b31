"""select --report quotes the benchmark's measured table for what the selection ran."""

from thresher.selection.measured import _measured, expected_effect, variant_name


def test_names_follow_the_command_line():
    assert variant_name("random", "none") == "random"
    assert variant_name("hard", "label") == "hard, label-balanced"
    assert variant_name("random", "none", 0.1) == "drop 10% label issues, random"


def test_quotes_every_measured_dataset_at_the_nearest_keep():
    data = _measured()
    assert len(data["datasets"]) == 3  # digits, the tuning and the held-out family halves
    lines = expected_effect("random", "label", 0.12)
    assert len(lines) == 3 and all("at keep 10%" in line for line in lines)
    digits = next(iter(data["datasets"].values()))["points"]["random, label-balanced"]["0.1"]
    assert f"{digits[0]:+.2f} +- {digits[1]:.2f} pt over random" in lines[0]


def test_the_baseline_and_unmeasured_variants_say_so():
    assert "baseline" in expected_effect("random", "none", 0.3)[0]
    assert expected_effect("kcenter", "cluster", 0.3) == [
        "kcenter, cluster-balanced: not measured (benchmarks/selection.py --variants)"
    ]
