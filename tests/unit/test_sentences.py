import pytest

from samvad.sentences import SentenceAggregator, split_sentences

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Pay Rs. 500 today. Then relax.", ["Pay Rs. 500 today.", "Then relax."]),
        ("Use e.g. the app. Or call.", ["Use e.g. the app.", "Or call."]),
        ("Rate is 3.5 percent. Fine?", ["Rate is 3.5 percent.", "Fine?"]),
        ("Open till 4 p.m. on weekdays! Closed Sundays.", ["Open till 4 p.m. on weekdays!", "Closed Sundays."]),
        ("हाँ, ठीक है। धन्यवाद॥ अगला", ["हाँ, ठीक है।", "धन्यवाद॥", "अगला"]),
        ("Talk to Dr. A. Kumar now. Bye", ["Talk to Dr. A. Kumar now.", "Bye"]),
        ("See section A. Next part.", ["See section A.", "Next part."]),
        ('Really?! "Yes." Ok', ["Really?!", '"Yes."', "Ok"]),
        ("   ", []),
    ],
)
def test_split(text, expected):
    assert split_sentences(text) == expected


def test_aggregator_releases_sentences_as_they_complete():
    agg = SentenceAggregator()
    released = []
    for ch in "First one. Second? Third in progress":
        released.append(agg.push(ch))
    flat = [s for batch in released for s in batch]
    assert flat == ["First one.", "Second?"]
    # "First one." is released once the space after it arrives, not at the end.
    assert released.index(["First one."]) == len("First one. ") - 1
    assert agg.flush() == ["Third in progress"]
    assert agg.flush() == []


def test_aggregator_does_not_split_abbreviation_across_tokens():
    agg = SentenceAggregator()
    out = agg.push("It costs Rs") + agg.push(". ") + agg.push("200. ")
    assert out == ["It costs Rs. 200."]
