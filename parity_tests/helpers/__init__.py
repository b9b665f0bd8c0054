"""Code the tests share: imported by test files and by ``.ci/run``, never collected as tests.

pytest puts ``parity_tests/`` on ``sys.path`` (the default ``prepend`` import mode:
the folder has no ``__init__.py``), so a test imports these as ``helpers.<module>``.

* :mod:`helpers.parity`: tolerances, both frameworks' runs of one SCS layer,
  the comparisons (float64 direct, float32 with its accuracy fallback);
* :mod:`helpers.cases`: the layer and pool configurations of the grids;
* :mod:`helpers.pool`: MaxAbsPool runs in both frameworks;
* :mod:`helpers.draws`: hypothesis strategies of layers and adversarial inputs;
* :mod:`helpers.hypothesis_profiles`: the hypothesis profiles;
* :mod:`helpers.demo_data`, :mod:`helpers.demo_runs`, :mod:`helpers.demo_trajectories`,
  :mod:`helpers.jax_compiles`, :mod:`helpers.tiny_dataset`: generated data, demo
  runs, training trajectories and compile counting for the demo tests.
"""
