"""healthscale: scale clinical workloads ahead of predictable surges, within their SLOs.

Packages, from the bottom up (import-linter enforces the order):
- ``healthscale.api``: the custom resources as frozen pydantic models, and the CRD generator.
- ``healthscale.domain``: the pure decision engine (calendar, forecasting, planning, SLO maths).
- ``healthscale.backtest``: replays real demand traces through the engine and reference policies.
- ``healthscale.cli``: the ``healthscale`` command.
"""

import os

# Each forecast solves small least-squares problems; multi-threaded BLAS makes those 10-20x
# slower on a busy 2-core node. Parallelism comes from many series, not from BLAS threads.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

__version__ = "0.1.0"
