"""The differencing attack (Venkatadri et al., IEEE S&P 2018), run against the real release.

An advertiser uploads a list L, then L plus one victim, and guesses from the two released counts
whether the victim is a platform user. Without noise this is exact: the second count is one
higher, or, with L's true count one below the reporting threshold, "fewer than 100" turns into
a number. Here every count goes through the real :func:`cleanroom.policy.release_count` (the
real discrete Laplace sampler on the OS CSPRNG, the default policy: ε = 0.5 per release,
threshold 100), with the victim in or out by a fair coin in each trial.

Each attacker's guess is a fixed function of the two released results, so ε-differential
privacy caps its accuracy at ``e^ε / (1 + e^ε)`` (the likelihood ratio of any outcome is at most
``e^ε``). The attackers:

- ``knows_count``: knows L's true count exactly (the strongest attacker; the first release then
  tells it nothing) and takes the likelihood-ratio decision on the second release, "fewer than
  100" included (its probability is the discrete Laplace CDF below the threshold);
- ``likelihood_ratio``: knows L's count only to within ±25 (uniform prior) and takes the
  Bayes-optimal decision on both releases;
- ``naive_difference``: guesses "in" when the second result is larger ("fewer than 100" below
  every number): the attack as published.

The checks are one-sided binomial bounds with a false-failure rate of 1e-6 per check, so a correct
release fails them with negligible probability, while a release with too little noise fails them
for certain: the same harness with ε = 0 (a test deployment) catches the victim every time.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cleanroom.policy import DEFAULT_SETTINGS, PolicySettings, release_count

TRIALS = 20_000
FALSE_FAILURE_RATE = 1e-6
EPSILON = DEFAULT_SETTINGS.epsilon_per_release
THRESHOLD = DEFAULT_SETTINGS.min_reported_count
# L's count within this distance either side is all the "likelihood_ratio" attacker knows.
PRIOR_HALF_WIDTH = 25

Outcome = int | None
"""A released count as the advertiser sees it; ``None`` is "fewer than <threshold>"."""

Attacker = Callable[[Outcome, Outcome], bool]
"""Guesses from (L's release, L-plus-victim's release) whether the victim is a user."""


def dp_accuracy_bound(epsilon: float) -> float:
    """The most often any guess can be right about one person under ε-DP, with prior 1/2."""
    return 1 / (1 + math.exp(-epsilon))


def most_correct_allowed(trials: int, bound: float) -> int:
    """The smallest k with P(Binomial(trials, bound) > k) <= FALSE_FAILURE_RATE.

    The binomial tail grows with p, so an attacker right with probability at most ``bound``
    exceeds k with probability at most FALSE_FAILURE_RATE.
    """
    log_p, log_q = math.log(bound), math.log1p(-bound)
    log_n = math.lgamma(trials + 1)
    tail = 0.0
    for k in range(trials, -1, -1):
        term = math.exp(
            log_n
            - math.lgamma(k + 1)
            - math.lgamma(trials - k + 1)
            + k * log_p
            + (trials - k) * log_q
        )
        if tail + term > FALSE_FAILURE_RATE:
            return k
        tail += term
    return -1


@dataclass(frozen=True)
class ReleaseModel:
    """The release as the attacker models it: ε and the threshold are public (GetPolicy)."""

    epsilon: float
    threshold: int

    def likelihood(self, outcome: Outcome, true_count: int) -> float:
        """P(the release of ``true_count`` is ``outcome``)."""
        if self.epsilon == 0:
            exact = true_count if true_count >= self.threshold else None
            return 1.0 if outcome == exact else 0.0
        q = math.exp(-self.epsilon)
        if outcome is None:
            # Noise is added first, then the threshold: P(true_count + Z <= threshold - 1).
            k = self.threshold - true_count - 1
            return q**-k / (1 + q) if k < 0 else 1 - q ** (k + 1) / (1 + q)
        return (1 - q) / (1 + q) * q ** abs(outcome - true_count)


def attackers(model: ReleaseModel, list_matches: int, coin: random.Random) -> dict[str, Attacker]:
    """The three attackers of the module docstring, for L with ``list_matches`` true matches."""
    window = range(max(0, list_matches - PRIOR_HALF_WIDTH), list_matches + PRIOR_HALF_WIDTH + 1)

    def decide(in_likelihood: float, out_likelihood: float) -> bool:
        if in_likelihood == out_likelihood:
            return coin.random() < 0.5
        return in_likelihood > out_likelihood

    def knows_count(first: Outcome, second: Outcome) -> bool:
        return decide(
            model.likelihood(second, list_matches + 1), model.likelihood(second, list_matches)
        )

    memo: dict[tuple[Outcome, Outcome], tuple[float, float]] = {}

    def likelihood_ratio(first: Outcome, second: Outcome) -> bool:
        if (first, second) not in memo:
            # Bayes over the window: P(both results | victim in) against ... | victim out.
            in_out = [
                math.fsum(
                    model.likelihood(first, c) * model.likelihood(second, c + v) for c in window
                )
                for v in (1, 0)
            ]
            memo[first, second] = (in_out[0], in_out[1])
        return decide(*memo[first, second])

    def naive_difference(first: Outcome, second: Outcome) -> bool:
        return (-1 if second is None else second) > (-1 if first is None else first)

    return {
        "knows_count": knows_count,
        "likelihood_ratio": likelihood_ratio,
        "naive_difference": naive_difference,
    }


@dataclass
class AttackRun:
    """Correct guesses per attacker over ``trials`` trials, and what the releases looked like."""

    trials: int
    correct: dict[str, int]
    outcomes: list[tuple[Outcome, Outcome]]

    def accuracy(self, attacker: str) -> float:
        return self.correct[attacker] / self.trials


def run_attack(settings: PolicySettings, list_matches: int, trials: int, seed: int) -> AttackRun:
    """Run the attack ``trials`` times through the real release: victim in or out by a coin."""
    coin = random.Random(seed)  # the experiment's coin, not the platform's noise
    model = ReleaseModel(settings.epsilon_per_release, settings.min_reported_count)
    guessers = attackers(model, list_matches, coin)
    correct = dict.fromkeys(guessers, 0)
    outcomes: list[tuple[Outcome, Outcome]] = []
    for _ in range(trials):
        victim_is_user = coin.random() < 0.5
        first = release_count(list_matches, settings).count
        second = release_count(list_matches + victim_is_user, settings).count
        outcomes.append((first, second))
        for name, guess in guessers.items():
            correct[name] += guess(first, second) == victim_is_user
    return AttackRun(trials, correct, outcomes)


def report(label: str, run: AttackRun, bound: float) -> None:
    """Print each attacker's accuracy beside the bound (shown with ``pytest -s``)."""
    allowed = most_correct_allowed(run.trials, bound) / run.trials
    for name in run.correct:
        accuracy = run.accuracy(name)
        print(
            f"{label}: {name}: accuracy {accuracy:.4f}, advantage {2 * accuracy - 1:+.4f} "
            f"(bound {bound:.4f}, allowed up to {allowed:.4f} over {run.trials} trials)"
        )


# L's true count for each variant; the victim adds one when it is a platform user.
VARIANTS = {
    "far_above_threshold": 500,
    # Without noise: "fewer than 100" when the victim is out, "100" when in.
    "at_threshold": THRESHOLD - 1,
    # 999 made-up emails plus the victim: a true count of 0 or 1.
    "padded_with_dummies": 0,
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_differencing_attack_is_right_no_more_often_than_dp_allows(variant: str) -> None:
    assert (EPSILON, THRESHOLD) == (0.5, 100)  # the default policy, as published
    run = run_attack(DEFAULT_SETTINGS, VARIANTS[variant], TRIALS, seed=len(variant))
    # Both releases are charged, so the two together are (2ε = 1.0)-DP for the victim.
    charged_bound = dp_accuracy_bound(2 * EPSILON)
    report(variant, run, charged_bound)
    allowed = most_correct_allowed(TRIALS, charged_bound)
    for name, correct in run.correct.items():
        assert correct <= allowed, f"{name} is right {correct}/{TRIALS} times"
    # L's own release does not depend on the victim at all, so only the second one's ε = 0.5
    # applies: the tighter bound holds too (the informed attacker sits right at it, since
    # thresholding after discrete Laplace noise loses nothing for a one-step test).
    tight_bound = dp_accuracy_bound(EPSILON)
    report(f"{variant} (second release only)", run, tight_bound)
    tight_allowed = most_correct_allowed(TRIALS, tight_bound)
    for name, correct in run.correct.items():
        assert correct <= tight_allowed, f"{name} is right {correct}/{TRIALS} times"


def test_at_threshold_the_release_is_not_a_one_bit_oracle() -> None:
    # Both outcomes occur whether or not the victim is in: "fewer than 100" is noisy too.
    run = run_attack(DEFAULT_SETTINGS, THRESHOLD - 1, 2_000, seed=3)
    seconds = [second for _, second in run.outcomes]
    assert None in seconds
    assert any(second is not None for second in seconds)


def test_a_padded_list_only_ever_hears_fewer_than_100() -> None:
    # A true count of 0 or 1 reaches 100 only with noise >= 99: probability ~1e-22 per release.
    run = run_attack(DEFAULT_SETTINGS, 0, 5_000, seed=5)
    assert all(outcome == (None, None) for outcome in run.outcomes)
    assert run.correct["knows_count"] <= most_correct_allowed(run.trials, dp_accuracy_bound(0.0))


@pytest.mark.parametrize("variant", ["far_above_threshold", "at_threshold"])
def test_without_noise_the_same_attack_always_succeeds(variant: str) -> None:
    # The harness can fail: with ε = 0 (a test deployment) the victim is caught every time.
    exact = dataclasses.replace(DEFAULT_SETTINGS, epsilon_per_release=0.0)
    trials = 2_000
    run = run_attack(exact, VARIANTS[variant], trials, seed=7)
    report(f"{variant} without noise", run, dp_accuracy_bound(2 * EPSILON))
    for name in ("knows_count", "likelihood_ratio", "naive_difference"):
        assert run.correct[name] == trials
        assert run.correct[name] > most_correct_allowed(trials, dp_accuracy_bound(2 * EPSILON))
