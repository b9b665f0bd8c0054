"""The suite's hypothesis profiles, and draws that depend on nothing but the test.

Profiles, chosen with ``HYPOTHESIS_PROFILE``:

* ``ci`` (default): derandomized, 200 examples for the cheap property tests
  (:func:`examples` gives the costlier ones a share), the same draws on every
  run, in any file order and selection, so CI cannot pass or fail by luck;
* ``dev``: fresh random draws, 1,000 examples for every property test: run
  it locally to explore, then pin what it finds with ``@example``;
* ``default-opt``: derandomized, 50 examples; the subset that
  ``test_default_xla_optimisation.py`` runs again at XLA's default
  optimisation level.

An example with a new shape waits for an XLA compile (seconds), so there is
no deadline and no too_slow health check. The example database stays the
default one in ``.hypothesis/`` (hypothesis does not use it when derandomized).

Order independence: hypothesis (6.13x and later) mixes into its draws
constants it collects from every "local" module (outside site-packages and
the standard library, test files excluded) found in ``sys.modules`` at the
time of a draw. Which project modules are loaded depends on which tests ran
before (a demo test imports ``demos.runner``, a parity test does not), so the
"same" derandomized draws differed with the file order and selection
(measured: 196 of 205 draws of ``test_scs_parity`` differed after
``test_cifar_demos.py``). :func:`load` turns that pool off;
``test_hypothesis_draws.py`` checks that importing a module full of new
constants leaves the draws unchanged.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

PROFILES = {
    "ci": {"max_examples": 200, "derandomize": True},
    "dev": {"max_examples": 1000, "derandomize": False},
    "default-opt": {"max_examples": 50, "derandomize": True},
}


def load(name: str) -> None:
    """Register every profile, load ``name`` and stop local constants from entering the draws.

    Raises:
        ValueError: for a profile name not in :data:`PROFILES`.
    """
    if name not in PROFILES:
        raise ValueError(f"HYPOTHESIS_PROFILE: expected one of {sorted(PROFILES)}, got {name!r}")
    for profile, options in PROFILES.items():
        settings.register_profile(profile, deadline=None, suppress_health_check=[HealthCheck.too_slow], **options)
    settings.load_profile(name)
    _without_local_constants()


def examples(share: float) -> int:
    """Examples for a property test that costs more per draw than the others.

    Derandomized profiles give it ``share`` of the profile's count (at least
    10); the exploring profile gives every test the full count.
    """
    if not settings.default.derandomize:
        return settings.default.max_examples
    return max(10, int(settings.default.max_examples * share))


def _without_local_constants() -> None:
    """Make hypothesis's pool of constants from local modules empty, whatever is imported.

    Reaches into ``hypothesis.internal`` (there is no public switch); a
    hypothesis without the pool needs nothing, and one that moves it is
    caught by ``test_hypothesis_draws.py``.
    """
    try:
        from hypothesis.internal.conjecture import providers
    except ImportError:
        return
    if hasattr(providers, "_get_local_constants") and hasattr(providers, "Constants"):
        empty = providers.Constants()
        providers._get_local_constants = lambda: empty
