"""Same random_seed, same draws: on a machine's first fit (fresh compile) and later ones
(PyTensor's disk caches). Slow: two fresh processes sharing one fresh compile directory."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

_FIT_SCRIPT = """
import hashlib, warnings
import bayescale
from bayescale.simulate_kaplan import simulate_kaplan

sim = simulate_kaplan(n_families=2, n_checkpoints=12, random_seed=5)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    fit = bayescale.fit(sim.runs, law={law!r}, draws=60, tune=150, chains=1, random_seed=3,
                        progressbar=False)
post = fit.idata.posterior
print(hashlib.sha256(b"".join(post[v].values.tobytes() for v in sorted(post.data_vars)))
      .hexdigest())
"""


@pytest.mark.parametrize("law", ["kaplan", "chinchilla"])
def test_first_and_cached_compile_give_identical_draws(tmp_path, law):
    env = {
        **os.environ,
        "PYTENSOR_FLAGS": f"base_compiledir={tmp_path / 'compiledir'}",
        "MPLBACKEND": "Agg",
    }
    digests = []
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-c", _FIT_SCRIPT.format(law=law)],
            env=env, capture_output=True, text=True, timeout=900, check=False,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        digests.append(done.stdout.strip().splitlines()[-1])
    assert digests[0] == digests[1]
