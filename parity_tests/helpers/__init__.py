"""Helpers the parity suite's test files share (no test file imports another).

* :mod:`helpers.parity`: tolerances, both frameworks' runs of one SCS layer,
  the comparisons (float64 direct, float32 with its accuracy fallback);
* :mod:`helpers.cases`: the layer and pool configurations of the grids;
* :mod:`helpers.pool`: MaxAbsPool runs in both frameworks;
* :mod:`helpers.draws`: hypothesis strategies of layers and adversarial inputs.
"""
