"""Tests of src/dlmvi/report/checklists.py and the report's new sections."""

from __future__ import annotations

from dlmvi.report.checklists import CLAIM_2024, FILLED, TO_COMPLETE, TRIPOD_AI, checklists


def test_item_numbers_are_the_published_ones():
    """TRIPOD+AI 2024: 27 numbered topics, 52 items (1 ... 27c); CLAIM 2024: items 1-44."""
    tripod = [i for i, _, _ in TRIPOD_AI]
    assert len(tripod) == 52 and len(set(tripod)) == 52
    assert tripod[:6] == ["1", "2", "3a", "3b", "3c", "4"] and tripod[-3:] == ["27a", "27b", "27c"]
    assert tripod[tripod.index("12a"):tripod.index("12g") + 1] == [f"12{c}" for c in "abcdefg"]
    assert [i for i, _, _ in CLAIM_2024] == [str(n) for n in range(1, 45)]
    assert dict((i, t) for i, _, t in CLAIM_2024)["13"] == "image acquisition protocol"


def test_items_are_filled_from_the_run_or_left_to_the_authors(tiny_study):
    from dlmvi.report.build import collect

    ctx = collect(tiny_study["run"])
    lists = checklists(ctx)
    tripod, claim = lists["TRIPOD+AI (2024)"], lists["CLAIM (2024 update)"]
    assert set(tripod["status"]) == {FILLED, TO_COMPLETE} and set(claim["status"]) == {FILLED, TO_COMPLETE}
    t = tripod.set_index("item")
    assert t.loc["17", "status"] == TO_COMPLETE and t.loc["18a", "status"] == TO_COMPLETE  # ethics, funding
    assert "AUC" in t.loc["23a", "from the run"] and "2018" in t.loc["23a", "from the run"]
    assert "scanner" in t.loc["23b", "from the run"]
    c = claim.set_index("item")
    assert "patient level" in c.loc["20", "from the run"].lower()
    assert c.loc["44", "status"] == TO_COMPLETE
    html = (tiny_study["run"] / "report.html").read_text()
    for section in ("Validation per site and scanner", "Taking the model to another site", "Reporting checklists",
                    "TRIPOD+AI (2024)", "CLAIM (2024 update)", TO_COMPLETE):
        assert section in html, section
