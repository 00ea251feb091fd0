"""Other libraries' warnings are handled in one place; bayescale's own always reach the user."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings

from bayescale.errors import SamplingWarning
from bayescale.quiet import is_bayescale_warning, own_warnings_only


def test_own_warnings_only_keeps_bayescale_lines_and_drops_the_rest():
    out = io.StringIO()
    with own_warnings_only(stream=out):
        warnings.warn(
            "divergences: try target_accept=0.95\nand more tuning", SamplingWarning, stacklevel=1
        )
        warnings.warn_explicit(
            "a third-party deprecation", FutureWarning, "/site-packages/arviz/x.py", 3
        )
        warnings.warn_explicit("BLAS chatter", UserWarning, "/site-packages/pytensor/c.py", 9)
    assert out.getvalue() == (
        "bayescale: warning: divergences: try target_accept=0.95 and more tuning\n"
    )


def test_a_plain_warning_raised_in_bayescale_code_is_ours():
    import bayescale.fit  # noqa: F401 - the module, which the package's `fit` function hides

    assert is_bayescale_warning(UserWarning, sys.modules["bayescale.fit"].__file__)
    assert is_bayescale_warning(SamplingWarning, "/anywhere/else.py")
    assert not is_bayescale_warning(UserWarning, "/site-packages/pytensor/link/c/cmodule.py")


def test_blas_lookup_does_not_warn_in_a_fresh_process():
    # a fresh process: PyTensor looks its BLAS flags up once per process
    code = (
        "from bayescale.quiet import resolve_blas_flags\n"
        "import pytensor\n"
        "flags = resolve_blas_flags()\n"
        "assert flags == pytensor.config.blas__ldflags\n"
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
