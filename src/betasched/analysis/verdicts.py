"""The verdicts of the claims (claims.py builds them), by rules fixed here and in params' ``stats``
section, written before the runs. Each claim carries its direction test's raw and Holm-adjusted
p-values and two verdicts:

- direction (does the effect go the paper's way?): each direction test belongs to the family
  declared in ``stats.family``; Holm's step-down adjustment runs over that family, and the
  verdict uses the adjusted p: *confirmed* when it is below 1 - level and the estimate lies on
  the paper's side of the null, *refuted* when below and on the other side, else *inconclusive*.
  A test outside the family is judged on its raw p and says so.
- claim 2 carries its own control (constant_matched, momentum 0.9 at beta's effective step): when
  beta beats constant, the verdict says whether the effective step explains it: *faster, not
  explained by the effective step* (beta also beats the control), *explained by the effective
  step* (the control ratio's 1 - 2(1 - level) interval lies inside the equivalence margin
  ``stats.equivalence.claim2_control``: two one-sided tests), else *not separated*.
- magnitude (is the paper's number right?): *consistent* when the paper's number lies inside the
  interval it is compared with, *inconsistent* when outside, and *equivalent* when a margin for
  that claim is declared in ``stats.margins`` and the 1 - 2(1 - level) interval lies inside it.
  The paper reports one seed (``stats.paper_seeds: 1``), so its number is compared with the
  prediction interval for one seed; the mean's interval stays beside it. "Consistent" is a
  failure to reject, never a confirmation. "n/a" for a claim that states a direction only.

Below ``stats.min_seeds`` seeds both verdicts are "inconclusive (n = k)" by rule. Censored seeds
(a target never reached within the run) enter at the run length: a one-sided interval (stats.py).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ..core import checks
from ..core.errors import ConfigError
from .stats import LEVEL, Interval, finite, holm

# the direction tests of the report's verdicts; claim 4a and 4c one per optimizer, claim 5 one per other method
DEFAULT_FAMILY = ("1", "2", "2.control", "3", "4a", "4c", "5")


@dataclass(frozen=True)
class Rules:
    """The verdict rules of params' stats section, read once (``Rules.from_params_section`` checks
    each field)."""
    min_seeds: int = 3
    level: float = LEVEL
    paper_seeds: int = 1  # the paper's numbers come from this many seeds: 1 -> judged by a prediction interval
    family: tuple = DEFAULT_FAMILY
    claim2_control: tuple = (0.9, 1.0 / 0.9)  # equivalence margin of constant_matched / beta
    margins: dict = field(default_factory=dict)  # claim id -> (low, high): the paper's number's equivalence band

    @classmethod
    def from_params_section(cls, st: dict) -> "Rules":
        """params' stats section, checked field by field, as the verdict rules."""
        checks.integer(st.get("min_seeds"), "stats.min_seeds", low=2)
        checks.number(st.get("level"), "stats.level", low=0.5, high=1, high_open=True)
        checks.integer(st.get("paper_seeds", 1), "stats.paper_seeds", low=1)
        family = st.get("family", list(DEFAULT_FAMILY))
        if not isinstance(family, list) or not all(str(t) in DEFAULT_FAMILY for t in family):
            raise ConfigError(f"stats.family={family!r}: a list of direction tests out of {sorted(DEFAULT_FAMILY)}")
        for name, band in {**(st.get("equivalence") or {}), **(st.get("margins") or {})}.items():
            if not (isinstance(band, list) and len(band) == 2 and all(isinstance(v, (int, float)) for v in band)
                    and band[0] < band[1]):
                raise ConfigError(f"stats margin {name}={band!r}: give [low, high] with low < high")
        unknown = set(st.get("margins") or {}) - {"2", "4b", "4d"}  # the claims that state a number
        if unknown:
            raise ConfigError(f"stats.margins names {sorted(unknown)}: only claims 2, 4b and 4d state a number")
        if set(st.get("equivalence") or {}) - {"claim2_control"}:
            raise ConfigError(f"stats.equivalence={st['equivalence']!r}: the only equivalence test is claim2_control")
        lo, hi = (st.get("equivalence") or {}).get("claim2_control", [0.9, 1.111])
        if not lo < 1 < hi:
            raise ConfigError(f"stats.equivalence.claim2_control=[{lo}, {hi}]: a margin around a ratio of 1 must "
                              "hold 1")
        return cls.from_section({**st, "family": [str(t) for t in family]})

    @classmethod
    def from_section(cls, st: dict) -> "Rules":
        equivalence = st.get("equivalence") or {}
        return cls(min_seeds=st["min_seeds"], level=st["level"], paper_seeds=st.get("paper_seeds", 1),
                   family=tuple(st.get("family") or DEFAULT_FAMILY),
                   claim2_control=tuple(equivalence.get("claim2_control", (0.9, 1 / 0.9))),
                   margins={str(k): tuple(v) for k, v in (st.get("margins") or {}).items()})

    @property
    def alpha(self) -> float:
        return 1 - self.level

    def in_family(self, test: str) -> bool:
        """Exact names; "4a", "4c" and "5" also stand for their per-optimizer / per-method tests."""
        head = test.split(".")[0]
        return test in self.family or (head in ("4a", "4c", "5") and head in self.family)


@dataclass
class Claim:
    id: str
    what: str
    paper: float | str | None
    null: float | None
    interval: Interval
    per_seed: list
    direction: str
    magnitude: str
    notes: str = ""
    test: str | None = None  # its name in the family of direction tests
    p: float | None = None
    p_holm: float | None = None
    side: str = "above"
    prediction: Interval | None = None
    extra: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["interval"] = self.interval.as_dict()
        d["prediction"] = self.prediction.as_dict() if self.prediction else None
        return d


def direction_word(estimate, null, p, side: str, alpha: float) -> str:
    """confirmed / refuted / inconclusive from a p-value and the estimate's side of the null."""
    if not (finite(p) and finite(estimate)) or null is None or p >= alpha:
        return "inconclusive"
    return "confirmed" if (estimate > null) == (side == "above") else "refuted"


def _inside(iv: Interval | None, band) -> bool:
    return iv is not None and iv.low is not None and iv.high is not None and band[0] <= iv.low and iv.high <= band[1]


def magnitude_word(paper, compared: Interval | None, narrow: Interval | None = None, margin=None) -> str:
    """equivalent / consistent / inconsistent / inconclusive for a paper's number; ``compared``: the
    interval it is judged against (the prediction interval for a one-seed paper number), ``narrow``:
    the mean's 1 - 2 alpha interval for the equivalence test against ``margin``."""
    if not isinstance(paper, (int, float)):
        return "n/a"
    if margin is not None and _inside(narrow, margin):
        return "equivalent"
    if compared is None or (compared.low is None and compared.high is None):
        return "inconclusive"
    lo = -math.inf if compared.low is None else compared.low
    hi = math.inf if compared.high is None else compared.high
    return "consistent" if lo <= paper <= hi else "inconsistent"


def family_tests(claims: list[Claim]) -> dict[str, float | None]:
    """Every direction test of the claims, by name: a claim's own and its sub-tests (claim 2's
    control, claim 5's comparisons)."""
    tests = {}
    for c in claims:
        if c.test and c.id != "5":
            tests[c.test] = c.p
        if c.id == "2" and "control" in c.extra:
            tests["2.control"] = c.extra["control"]["p"]
        if c.id == "5":
            tests.update({f"5.{s}": v["p"] for s, v in c.extra.get("comparisons", {}).items()})
    return tests


def decide(claims: list[Claim], rules: Rules) -> list[Claim]:
    """Holm over the declared family, then both verdicts of every claim."""
    tests = family_tests(claims)
    adjusted = holm({k: p for k, p in tests.items() if rules.in_family(k)})
    final = lambda k: adjusted.get(k) if rules.in_family(k) else tests.get(k)  # noqa: E731
    for c in claims:
        if c.interval.n < rules.min_seeds:
            rule = f"inconclusive (n = {c.interval.n} < {rules.min_seeds})"
            c.direction = c.direction if c.direction.startswith("inconclusive (no") else rule
            c.magnitude = rule if isinstance(c.paper, (int, float)) else "n/a"
            continue
        if c.id == "5":
            comps = c.extra["comparisons"]
            words = {}
            for s, v in comps.items():
                v["p_holm"] = final(f"5.{s}")
                words[s] = direction_word(v["interval"]["estimate"], 1.0, v["p_holm"], "above", rules.alpha)
            # confirmed needs every comparison: the p that matches it is the largest
            c.p = max((v["p"] for v in comps.values() if finite(v["p"])), default=None)
            c.p_holm = max((v["p_holm"] for v in comps.values() if finite(v["p_holm"])), default=None)
            c.direction = ("confirmed" if all(w == "confirmed" for w in words.values()) else
                           "refuted" if any(w == "refuted" for w in words.values()) else "inconclusive")
            c.magnitude = "n/a"
        elif c.test:
            c.p_holm = final(c.test)
            estimate = c.extra.get("estimate_for_direction", c.interval.estimate)
            c.direction = direction_word(estimate, c.null, c.p_holm, c.side, rules.alpha)
            if c.id == "3" and c.direction == "refuted":  # a one-sided (upper-tail) test cannot refute
                c.direction = "inconclusive"
            if not rules.in_family(c.test) and c.direction != "inconclusive":
                c.direction += " (outside the declared family: raw p)"
        else:
            c.direction = "n/a" if c.id != "1" else c.direction
        if c.id == "2":
            c.direction = _claim2_word(c, final("2.control"), rules)
        if c.id not in ("1", "5"):
            compared = c.prediction if rules.paper_seeds == 1 and c.prediction and c.prediction.low is not None \
                else c.interval
            narrow = Interval(**c.extra["narrow"]) if "narrow" in c.extra else None
            c.magnitude = magnitude_word(c.paper, compared, narrow, rules.margins.get(c.id))
            if c.magnitude in ("consistent", "inconsistent") and compared is c.prediction:
                c.magnitude += " (one-seed prediction interval)"
    return claims


def _claim2_word(c: Claim, p_control, rules: Rules) -> str:
    """Claim 2's direction with its control: faster, and is the effective step the reason?"""
    if c.direction != "confirmed":
        return c.direction
    ctrl = c.extra.get("control")
    if ctrl is None:
        return "confirmed (no constant_matched control to judge it against)"
    ctrl["p_holm"] = p_control
    # equivalence first: a control inside its margin is explained, whatever a tight interval's side
    if ctrl["narrow"] is not None and _inside(Interval(**ctrl["narrow"]), rules.claim2_control):
        return "explained by the effective step"
    word = direction_word(ctrl["interval"]["estimate"], 1.0, p_control, "above", rules.alpha)
    if word == "confirmed":
        return "faster, not explained by the effective step"
    if word == "refuted":  # the control beats beta: the effective step more than explains it
        return "explained by the effective step (the control is faster than beta)"
    return "faster than constant; not separated from the effective step"


# positive words 1, negative -1, anything else 0, "consistent" included: a failure to reject confirms nothing
# (the words themselves are in claims.json and MLflow's tags)
VERDICT_CODE = {"confirmed": 1, "refuted": -1, "consistent": 0, "equivalent": 1, "inconsistent": -1,
                "faster, not explained by the effective step": 1, "explained by the effective step": -1}


def _code(word: str) -> int:
    return VERDICT_CODE.get(word.split(" (")[0], 0)


def _summary_key(c: dict) -> str:
    opt = c["what"].split(":")[0] if c["id"].startswith("4") else ""
    return f"c{c['id']}" + (f".{opt}" if opt else "")


def summary_words(claims: list[dict]) -> dict[str, str]:
    """Each claim's two verdicts in words, beside summary_metrics' codes in metrics/summary.json:
    c<id>[.<optimizer>].direction_word / .magnitude_word (what `make results` prints)."""
    return {f"{_summary_key(c)}.{which}_word": c[which] for c in claims for which in ("direction", "magnitude")}


def summary_metrics(claims: list[dict]) -> dict[str, float]:
    """Each claim's estimate, adjusted p and verdicts as a few flat numbers, for `dvc exp show` and
    MLflow's charts: c<id>[.<optimizer>].value / .p_holm / .direction / .magnitude (positive
    verdicts 1, negative -1, else 0; n/a left out)."""
    out = {}
    for c in claims:
        key = _summary_key(c)
        if c["interval"]["estimate"] is not None:
            out[f"{key}.value"] = round(float(c["interval"]["estimate"]), 6)
        if c.get("p_holm") is not None:
            out[f"{key}.p_holm"] = round(float(c["p_holm"]), 6)
        for which in ("direction", "magnitude"):
            if c[which] != "n/a":
                out[f"{key}.{which}"] = _code(c[which])
    return out
