"""Per-run residual sums of the Chinchilla curve, with their Jacobian, in one compiled pass.

The Gaussian model's likelihood (:mod:`bayescale.models.likelihood`) needs, per run, four sums
over its checkpoints of the AR(1)-whitened residuals ``e_i = log L_i - log mu_i``:
``q_ee = sum w(e)^2``, ``q_e1 = sum w(e) w(1)``, ``q_11 = sum w(1)^2`` and
``log|R| = sum log(1 - phi_i^2)``. Written as PyTensor element-wise graphs these cost a gather
of the run's parameters and a scatter-add per checkpoint, forward and backward (about 0.8 ms
per log-density gradient at 7,200 points). Here one numba loop over the checkpoints computes the
sums *and* their derivatives with respect to the run's curve terms and the AR(1) correlation,
so the gradient needs no second pass over the data.

Within run ``r`` the mean curve is
``log mu_i = logaddexp(c_r, b_r - beta_r log(D_i/D0)) + kappa_r s_i + tilt_r v_i``, where
``c_r = log(E + A/N_r^alpha)`` is the run's converged loss, ``kappa_r s_i`` the
learning-rate schedule's excess at checkpoint ``i`` and ``tilt_r v_i`` the within-run tilt
(``s = v = 0`` without a schedule; see :mod:`bayescale.laws.schedule`). The correlation of checkpoint
``i`` with its predecessor is ``phi_i = rho ** x_i`` (``x_i``: the gap in log tokens over the
median gap, or 1 in checkpoint order; ``phi = 0`` for a run's first checkpoint). ``1 - phi`` is
taken as ``-expm1(x log rho)`` so that ``rho`` near 1 loses no precision. The terms that depend
on ``phi`` alone are computed once per distinct exponent, not per checkpoint: on 7,200 evenly
log-spaced checkpoints this halves the kernel's time.

:class:`ResidualRunSums` is the PyTensor Op: outputs ``sums`` (runs x 4) and ``jacobian``
(runs x 4 x 6, derivatives of the four sums by ``(c_r, b_r, beta_r, kappa_r, tilt_r, rho)``);
its gradient is a contraction of the Jacobian with the incoming gradient. Under PyTensor's numba backend (nutpie)
it compiles to the numba kernel itself; the C backend (``pm.sample``) calls the same kernel.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from pytensor.gradient import DisconnectedType, grad_not_implemented
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayescale.compiled import source_cache_key

#: Order of the outputs' last axis and of the Jacobian's middle axis.
SUM_NAMES = ("q_ee", "q_e1", "q_11", "log_det_r")
#: Order of the Jacobian's last axis.
ARG_NAMES = ("c", "b", "beta", "kappa", "tilt", "rho")


def exponent_table(expo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct AR(1) exponents and each checkpoint's index into them.

    The kernel computes ``phi = rho ** x`` and its derived terms once per distinct exponent
    ``x``: checkpoints spaced evenly in log tokens share one, and runs often share their grids.
    Exponents are rounded to 40 significant bits (a relative ``1e-12``) first, so that gaps
    equal up to floating-point rounding share an entry (``phi`` moves by less than ``1e-11``
    relative). The rounding is relative, so a tiny positive exponent stays positive (an
    exponent of 0 would make ``1 - phi^2`` zero).
    """
    mantissa, power = np.frexp(np.asarray(expo, dtype=float))
    rounded = np.ldexp(np.round(mantissa * 2.0**40) / 2.0**40, power)
    values, index = np.unique(rounded, return_inverse=True)
    return values, index.astype(np.int64).ravel()


def _residual_run_sums(c, b, beta, kappa, tilt, rho, log_loss, log_d, anneal, tilt_cov, expo,
                       expo_index, starts, autocorrelated):
    """Sums and Jacobian per run (plain Python; compiled with numba below)."""
    n_runs = c.shape[0]
    sums = np.zeros((n_runs, 4))
    jac = np.zeros((n_runs, 4, 6))
    r0 = rho[0]
    # Per distinct exponent: phi, 1/sqrt(1 - phi^2), the whitened one u and d u / d phi,
    # d phi / d rho, and a checkpoint's terms of log|R| and the rho derivatives of q_11, log|R|.
    n_expo = expo.shape[0] if autocorrelated else 0
    t_phi = np.empty(n_expo)
    t_inv_s = np.empty(n_expo)
    t_u = np.empty(n_expo)
    t_du = np.empty(n_expo)
    t_dphi = np.empty(n_expo)
    t_log_det = np.empty(n_expo)
    t_j11 = np.empty(n_expo)
    t_jld = np.empty(n_expo)
    if autocorrelated:
        log_rho = math.log(r0)
        for k in range(n_expo):
            one_minus_phi = -math.expm1(expo[k] * log_rho)
            phi = 1.0 - one_minus_phi
            one_minus_phi2 = one_minus_phi * (1.0 + phi)
            inv_s = 1.0 / math.sqrt(one_minus_phi2)
            u = one_minus_phi * inv_s
            dphi = expo[k] * phi / r0
            du_phi = (-1.0 + u * phi * inv_s) * inv_s
            t_phi[k], t_inv_s[k], t_u[k], t_du[k], t_dphi[k] = phi, inv_s, u, du_phi, dphi
            t_log_det[k] = math.log(one_minus_phi2)
            t_j11[k] = 2.0 * u * du_phi * dphi
            t_jld[k] = -2.0 * phi * inv_s * inv_s * dphi
    for r in range(n_runs):
        c_r, b_r, beta_r, kappa_r, tilt_r = c[r], b[r], beta[r], kappa[r], tilt[r]
        q_ee = q_e1 = q_11 = log_det = 0.0
        j_ee_c = j_ee_b = j_ee_beta = j_ee_kappa = j_ee_tilt = j_ee_rho = 0.0
        j_e1_c = j_e1_b = j_e1_beta = j_e1_kappa = j_e1_tilt = j_e1_rho = 0.0
        j_11_rho = j_ld_rho = 0.0
        e_prev = de_c_prev = de_b_prev = de_beta_prev = de_kappa_prev = de_tilt_prev = 0.0
        for i in range(starts[r], starts[r + 1]):
            z = b_r - beta_r * log_d[i]
            # log mu = logaddexp(c, z); sig = d log mu / d c
            if c_r >= z:
                t = math.exp(z - c_r)
                log_mu = c_r + math.log1p(t)
                sig = 1.0 / (1.0 + t)
            else:
                t = math.exp(c_r - z)
                log_mu = z + math.log1p(t)
                sig = t / (1.0 + t)
            e = log_loss[i] - log_mu - kappa_r * anneal[i] - tilt_r * tilt_cov[i]
            de_c = -sig
            de_b = sig - 1.0
            de_beta = (1.0 - sig) * log_d[i]
            de_kappa = -anneal[i]
            de_tilt = -tilt_cov[i]
            if autocorrelated and i > starts[r]:
                k = expo_index[i]
                phi, inv_s, u = t_phi[k], t_inv_s[k], t_u[k]
                w = (e - phi * e_prev) * inv_s
                dw_c = (de_c - phi * de_c_prev) * inv_s
                dw_b = (de_b - phi * de_b_prev) * inv_s
                dw_beta = (de_beta - phi * de_beta_prev) * inv_s
                dw_kappa = (de_kappa - phi * de_kappa_prev) * inv_s
                dw_tilt = (de_tilt - phi * de_tilt_prev) * inv_s
                dw_phi = (-e_prev + w * phi * inv_s) * inv_s
                log_det += t_log_det[k]
                j_ee_rho += 2.0 * w * dw_phi * t_dphi[k]
                j_e1_rho += (u * dw_phi + w * t_du[k]) * t_dphi[k]
                j_11_rho += t_j11[k]
                j_ld_rho += t_jld[k]
            else:
                w, u = e, 1.0
                dw_c, dw_b, dw_beta, dw_kappa, dw_tilt = de_c, de_b, de_beta, de_kappa, de_tilt
            q_ee += w * w
            q_e1 += w * u
            q_11 += u * u
            j_ee_c += 2.0 * w * dw_c
            j_ee_b += 2.0 * w * dw_b
            j_ee_beta += 2.0 * w * dw_beta
            j_ee_kappa += 2.0 * w * dw_kappa
            j_ee_tilt += 2.0 * w * dw_tilt
            j_e1_c += u * dw_c
            j_e1_b += u * dw_b
            j_e1_beta += u * dw_beta
            j_e1_kappa += u * dw_kappa
            j_e1_tilt += u * dw_tilt
            e_prev, de_c_prev, de_b_prev, de_beta_prev = e, de_c, de_b, de_beta
            de_kappa_prev, de_tilt_prev = de_kappa, de_tilt
        sums[r, 0], sums[r, 1], sums[r, 2], sums[r, 3] = q_ee, q_e1, q_11, log_det
        jac[r, 0, 0], jac[r, 0, 1], jac[r, 0, 2] = j_ee_c, j_ee_b, j_ee_beta
        jac[r, 0, 3], jac[r, 0, 4], jac[r, 0, 5] = j_ee_kappa, j_ee_tilt, j_ee_rho
        jac[r, 1, 0], jac[r, 1, 1], jac[r, 1, 2] = j_e1_c, j_e1_b, j_e1_beta
        jac[r, 1, 3], jac[r, 1, 4], jac[r, 1, 5] = j_e1_kappa, j_e1_tilt, j_e1_rho
        jac[r, 2, 5] = j_11_rho
        jac[r, 3, 5] = j_ld_rho
    return sums, jac


residual_run_sums = numba.njit(_residual_run_sums, fastmath=False)
residual_run_sums.__doc__ = """Per-run sums and their Jacobian (numba-compiled).

Parameters
----------
c, b, beta, kappa, tilt
    Run-level curve terms (length runs): converged log-loss, log data-term at D0, data
    exponent, the schedule excess's scale and the within-run tilt.
rho
    Length-1 array with the AR(1) correlation (ignored unless ``autocorrelated``).
log_loss, log_d, anneal, tilt_cov
    Per checkpoint: observed log-loss, ``log(D/D0)`` (the effective tokens under a schedule),
    the schedule's annealing covariate ``s`` and the tilt covariate ``v`` (zeros without a
    schedule).
expo, expo_index
    The distinct exponents ``x`` of ``rho`` and each checkpoint's index into them (see
    :func:`exponent_table`).
starts
    Offsets of the runs' contiguous checkpoint blocks (length runs + 1).
autocorrelated
    Whiten with AR(1) (otherwise ``phi = 0``).

Returns
-------
sums : ndarray (runs, 4)
    ``q_ee, q_e1, q_11, log|R|`` per run.
jacobian : ndarray (runs, 4, 6)
    ``jacobian[r, k, j]`` = d ``sums[r, k]`` / d ``(c_r, b_r, beta_r, kappa_r, tilt_r, rho)[j]``.
"""


class ResidualRunSums(Op):
    """PyTensor Op for :func:`residual_run_sums` (first derivatives only).

    Inputs ``(c, b, beta, kappa, tilt, rho, log_loss, log_d, anneal, tilt_cov, expo,
    expo_index, starts)`` as in :func:`residual_run_sums`; ``autocorrelated`` is a property of
    the Op. Outputs ``sums`` and ``jacobian``. Gradients flow to ``c, b, beta, kappa, tilt,
    rho``; the data inputs have none.
    """

    __props__ = ("autocorrelated",)

    def __init__(self, autocorrelated: bool) -> None:
        self.autocorrelated = bool(autocorrelated)

    def make_node(self, *inputs: Any) -> Apply:
        import pytensor.tensor as pt

        if len(inputs) != 13:
            raise TypeError(
                "ResidualRunSums takes c, b, beta, kappa, tilt, rho, log_loss, log_d, anneal, "
                "tilt_cov, expo, expo_index, starts"
            )
        floats = [pt.as_tensor_variable(v, dtype="float64") for v in inputs[:11]]
        indices = [pt.as_tensor_variable(v, dtype="int64") for v in inputs[11:]]
        if any(t.ndim != 1 for t in [*floats, *indices]):
            raise TypeError("ResidualRunSums takes vectors")
        outputs = [
            pt.tensor(dtype="float64", shape=(None, 4)),
            pt.tensor(dtype="float64", shape=(None, 4, 6)),
        ]
        return Apply(self, [*floats, *indices], outputs)

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:
        sums, jac = residual_run_sums(*inputs, self.autocorrelated)
        outputs[0][0] = sums
        outputs[1][0] = jac

    def infer_shape(self, fgraph: Any, node: Apply, shapes: list[tuple]) -> list[tuple]:
        n_runs = shapes[0][0]
        return [(n_runs, 4), (n_runs, 4, 6)]

    def L_op(self, inputs: list[Any], outputs: list[Any], output_grads: list[Any]) -> list[Any]:
        import pytensor.tensor as pt

        g_sums, g_jac = output_grads
        if not isinstance(g_jac.type, DisconnectedType):
            raise NotImplementedError("ResidualRunSums has first derivatives only")
        jac = outputs[1]
        if isinstance(g_sums.type, DisconnectedType):
            g_sums = pt.zeros_like(outputs[0])
        g_args = (g_sums[:, :, None] * jac).sum(axis=1)  # runs x (c, b, beta, kappa, tilt, rho)
        grads = [g_args[:, k] for k in range(5)] + [g_args[:, 5].sum(keepdims=True)]
        data = [grad_not_implemented(self, i, inputs[i]) for i in range(6, 13)]
        return [*grads, *data]


def _register_numba() -> None:
    from pytensor.link.numba.dispatch.basic import register_funcify_default_op_cache_key

    @register_funcify_default_op_cache_key(ResidualRunSums)
    def numba_funcify_residual_run_sums(op: ResidualRunSums, node: Any = None, **kwargs: Any):
        autocorrelated = op.autocorrelated

        @numba.njit(fastmath=False)
        def run_sums(c, b, beta, kappa, tilt, rho, log_loss, log_d, anneal, tilt_cov, expo,
                     expo_index, starts):
            return residual_run_sums(
                c, b, beta, kappa, tilt, rho, log_loss, log_d, anneal, tilt_cov, expo,
                expo_index, starts, autocorrelated,
            )

        return run_sums, source_cache_key(_residual_run_sums, numba_funcify_residual_run_sums)


_register_numba()
