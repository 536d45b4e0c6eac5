"""Benchmarks of the operator at scale, side by side with the CronJob controller (issue 10).

    python -m bench.run [--scenarios thundering_minute,cold_start,idle,events,conditions] [--sizes 100,1000]

See bench/run.py for the options and bench/out/ for what a run writes.
"""

import sys
from pathlib import Path

# The harness of the tests (tests/harness.py) and the local control plane (hack/localcluster.py).
for _path in (Path(__file__).resolve().parents[1], Path(__file__).resolve().parents[1] / "hack"):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
