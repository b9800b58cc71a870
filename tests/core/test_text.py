from core.text import plural


def test_one_is_singular_and_others_are_plural():
    assert plural(1, "run") == "1 run"
    assert plural(2, "run") == "2 runs"
    assert plural(0, "image") == "0 images"
    assert plural(1442, "image") == "1,442 images"


def test_irregular_plurals_and_fractions():
    assert plural(2, "entry") == "2 entries"
    assert plural(2, "key") == "2 keys"
    assert plural(3, "match", "matches") == "3 matches"
    assert plural(0.5, "minute") == "0.5 minutes"
    assert plural(1.0, "minute") == "1 minute"


def test_a_percentage_never_rounds_to_an_impossible_figure():
    from core.text import percent

    assert percent(0.0) == "0.0 %" and percent(1.0) == "100.0 %" and percent(0.4567) == "45.7 %"
    assert percent(0.0004) == "< 0.1 %" and percent(0.004, 0) == "< 1 %"
    assert percent(0.9996) == "> 99.9 %" and percent(0.996, 0) == "> 99 %"
