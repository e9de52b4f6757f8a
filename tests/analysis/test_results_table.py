"""`make results`: every experiment's claims in words, under 100 columns."""
from betasched.analysis.verdicts import summary_metrics, summary_words
from betasched.pipeline.results_table import WIDTH, claims_of, render


def _claim(cid, what, direction, magnitude, estimate):
    return {"id": cid, "what": what, "direction": direction, "magnitude": magnitude,
            "interval": {"estimate": estimate}, "p_holm": 0.5}


CLAIMS = [_claim("2", "SGD: steps to 0.35", "faster than constant; not separated from the effective step",
                 "consistent (one-seed prediction interval)", 1.389),
          _claim("4a", "sgd: flagged minus random groups", "confirmed", "n/a", 36.1),
          _claim("4a", "adam: flagged minus random groups", "inconclusive", "n/a", 9.5)]


def test_summary_json_has_the_words_beside_the_codes():
    codes, words = summary_metrics(CLAIMS), summary_words(CLAIMS)
    assert codes["c4a.sgd.direction"] == 1 and words["c4a.sgd.direction_word"] == "confirmed"
    assert words["c2.magnitude_word"] == "consistent (one-seed prediction interval)"
    assert all(isinstance(v, (int, float)) for v in codes.values()) and not set(codes) & set(words)


def test_results_fit_in_100_columns_and_keep_each_claims_words():
    row = {"Experiment": "hybrid-exp-with-a-long-name", "rev": "abc1234", "preset": "laptop-power",
           "schedule": "hybrid", "matrix.seeds": [0, 1, 2, 3, 4, 5, 6, 7],
           **summary_metrics(CLAIMS), **summary_words(CLAIMS), "c2.p_holm": 0.03}
    text = render([row, {"Experiment": None, "rev": "workspace"}])
    assert max(map(len, text.splitlines())) <= WIDTH
    assert set(claims_of(row)) == {"2", "4a.sgd", "4a.adam"}
    assert "1.39" in text and "faster than constant" in text and "confirmed / n/a" in text
    assert "workspace" in text and "no verdicts" in text
