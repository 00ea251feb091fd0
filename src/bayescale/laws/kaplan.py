"""The Kaplan form with optimizer steps and batch size (Kaplan et al. 2020; Su et al. 2024).

Usual convention, with ``N`` parameters, ``S`` optimizer steps and ``B`` tokens per step::

    L(N)      = (Nc / N)^alphaN                         # lowest reachable loss of size N
    Bcrit(L)  = Bstar / L^(1 / alphaB)                  # critical batch size (tokens)
    Smin      = S / (1 + Bcrit(L) / B)                  # steps needed at B >> Bcrit
    Emin      = E / (1 + B / Bcrit(L)),  E = B S        # tokens needed at B << Bcrit
    L(N, S)   = (Nc / N)^alphaN + (Sc / Smin)^alphaS

so that ``(S/Smin - 1)(E/Emin - 1) = 1`` and, at ``B = Bcrit(L)``, ``S = 2 Smin``.

At a finite batch size the loss appears on both sides of ``L(N, S)`` (through ``Bcrit(L)``):
:func:`solve_log_loss` finds it per point.

**Reference-scale coordinates.** The Bayesian model samples
``theta = (c_N, log_alphaN, c_S, log_alphaS, b_crit, log_alphaB)`` with reference scales
``N0, S0, L0`` (geometric means of the data), so that exponents and scales decouple::

    log L(N)         = c_N - alphaN log(N / N0),       c_N    = alphaN log(Nc / N0)
    log step term    = c_S - alphaS log(Smin / S0),    c_S    = alphaS log(Sc / S0)
    log Bcrit(L)     = b_crit - log(L / L0) / alphaB,  b_crit = log Bstar - log(L0) / alphaB

**The solve.** In ``x = log L`` the loss solves ``g(x) = x - log(L_N + T(x)) = 0`` with the
step term ``T(x) = (Sc/S)^alphaS (1 + Bcrit(e^x)/B)^alphaS`` decreasing in ``x``. So ``g`` is
strictly increasing, ``g' = 1 + (alphaS/alphaB) w_B w_T`` with
``w_B = Bcrit/(B + Bcrit)`` and ``w_T = T/(L_N + T)`` (both in (0, 1)), and the root lies in
``[x_lo, x_hi]`` with ``x_lo = log(L_N + (Sc/S)^alphaS)`` (``g(x_lo) <= 0``) and
``x_hi = log(L_N + T(x_lo))`` (``g(x_hi) >= 0``). Plain fixed-point iteration
``x <- log(L_N + T(x))`` is *not* safe: its slope ``(alphaS/alphaB) w_B w_T`` reaches 3.6
with Kaplan's constants. Instead a fixed number of safeguarded Newton steps is taken (the
bracket shrinks with the sign of ``g`` at every iterate; a Newton step that leaves it is
replaced by bisection), starting from the bracket's end nearer to the root by linear
interpolation. Because ``1 <= g' <= 1 + alphaS/alphaB``, Newton converges quadratically once
close and bisection halves the bracket otherwise: :data:`NEWTON_STEPS` steps reach machine
precision (relative error below 1e-13 against :func:`scipy.optimize.brentq` over
``tests/test_kaplan_law.py``'s grid of constants, sizes, steps and batch sizes, which spans
8 orders of magnitude of ``Bcrit/B``).

Gradients: the iterations run in one Op without gradient (:class:`KaplanRoot`, with a numba
implementation so nutpie's numba backend compiles it as a per-point loop with early exit; an
unrolled chain of elementwise steps took minutes to JIT-compile); one last Newton step
``x* - g(x*; theta) / g'(x*)`` (with ``g'`` held constant) carries the gradient, which is then
exactly the implicit-function-theorem gradient ``-(dg/dtheta) / g'`` at the root. Should the
numba registration be unavailable, the Op still runs (in Python).

Every function takes ``math`` (``numpy`` by default, ``pytensor.tensor`` in the model).
"""

from __future__ import annotations

import math as scalar_math
from types import ModuleType
from typing import Any

import numpy as np
from pytensor.graph.basic import Apply
from pytensor.graph.op import Op

from bayescale.compiled import source_cache_key

KAPLAN_PARAMS: tuple[str, ...] = ("Nc", "alphaN", "Sc", "alphaS", "Bstar", "alphaB")
KAPLAN_THETA: tuple[str, ...] = ("c_N", "log_alphaN", "c_S", "log_alphaS", "b_crit", "log_alphaB")

#: Kaplan et al. (2020): alphaN, Nc (non-embedding params), Sc, alphaS (the L(N, S) fit) and
#: Bstar (tokens), alphaB (critical batch size).
KAPLAN_2020: dict[str, float] = {
    "Nc": 8.8e13,
    "alphaN": 0.076,
    "Sc": 2.1e3,
    "alphaS": 0.76,
    "Bstar": 2e8,
    "alphaB": 0.21,
}

#: Safeguarded Newton steps of :func:`solve_log_loss` (see the module docstring).
NEWTON_STEPS = 12


def _softplus(z: Any, math: ModuleType) -> Any:
    return math.logaddexp(0.0 * z, z)


def _sigmoid(z: Any, math: ModuleType) -> Any:
    return math.exp(-math.logaddexp(0.0 * z, -z))


def _no_grad(x: Any, math: ModuleType) -> Any:
    if math is np:
        return x
    from pytensor.gradient import zero_grad

    return zero_grad(x)


def solve_log_loss(
    log_lowest: Any,
    log_step_term: Any,
    log_bcrit_ratio0: Any,
    inv_alpha_b: Any,
    alpha_s: Any,
    n_steps: int | None = None,
    math: ModuleType = np,
) -> Any:
    """Solve ``L = L_N + (Sc/S)^alphaS (1 + Bcrit(L)/B)^alphaS`` for ``log L`` per point.

    Parameters
    ----------
    log_lowest
        ``log L_N = alphaN log(Nc/N)``, the log of the lowest reachable loss.
    log_step_term
        ``alphaS log(Sc/S)``: the log step term at infinite batch size.
    log_bcrit_ratio0
        ``log(Bstar/B)``, so that ``log(Bcrit(L)/B) = log_bcrit_ratio0 - log(L)/alphaB``.
    inv_alpha_b
        ``1/alphaB``.
    alpha_s
        ``alphaS``.
    n_steps
        Safeguarded Newton steps (default :data:`NEWTON_STEPS`).
    math
        ``numpy`` or ``pytensor.tensor``.

    Returns
    -------
    array-like
        ``log L`` (broadcast shape of the inputs); with PyTensor, its gradient is the
        implicit-function-theorem gradient at the root.
    """
    n_steps = NEWTON_STEPS if n_steps is None else int(n_steps)
    a, s, r0, p, q = log_lowest, log_step_term, log_bcrit_ratio0, inv_alpha_b, alpha_s
    if math is np:
        inputs = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (a, s, r0, p, q)))
        x = _newton_numpy(*inputs, n_steps=n_steps)
        g, slope = _g_and_slope(x, a, s, r0, p, q, np)
        return x - g / slope
    # PyTensor: the iterations run in one Op without gradient (numba implementation below;
    # an unrolled chain of elementwise steps took minutes to JIT-compile), the last Newton
    # step carries the implicit-function-theorem gradient
    shape_args = math.broadcast_arrays(*(math.as_tensor_variable(v) for v in (a, s, r0, p, q)))
    flat = [math.cast(v, "float64").ravel() for v in shape_args]
    x_star = KaplanRoot(n_steps)(*flat).reshape(shape_args[0].shape)
    g, slope = _g_and_slope(x_star, a, s, r0, p, q, math)
    return x_star - g / _no_grad(slope, math)


def _g_and_slope(x: Any, a: Any, s: Any, r0: Any, p: Any, q: Any, math: ModuleType):
    """``g(x) = x - log(L_N + T(x))`` and ``g'(x)`` (6 overflow-safe transcendentals)."""
    r = r0 - p * x  # log(Bcrit/B)
    softplus_r = math.maximum(r, 0.0) + math.log1p(math.exp(-abs(r)))
    log_t = s + q * softplus_r  # log step term
    big = math.maximum(a, log_t)
    log_total = big + math.log1p(math.exp(-abs(a - log_t)))  # log(L_N + T)
    w_b = math.exp(r - softplus_r)  # Bcrit / (B + Bcrit)
    w_t = math.exp(log_t - log_total)  # T / (L_N + T)
    return x - log_total, 1.0 + q * p * w_b * w_t


def _newton_numpy(a, s, r0, p, q, n_steps: int) -> np.ndarray:
    """Vectorised safeguarded Newton iterations (no final step); see the module docstring."""
    lo = np.logaddexp(a, s)
    g_lo, _ = _g_and_slope(lo, a, s, r0, p, q, np)
    hi = lo - g_lo  # = log(L_N + T(x_lo)) >= lo
    g_hi, _ = _g_and_slope(hi, a, s, r0, p, q, np)
    # start at the linear interpolation inside the bracket (regula falsi point)
    frac = -g_lo / np.maximum(g_hi - g_lo, 1e-300)
    x = lo + np.clip(frac, 0.0, 1.0) * (hi - lo)
    for _ in range(n_steps):
        g, slope = _g_and_slope(x, a, s, r0, p, q, np)
        lo = np.where(g <= 0, x, lo)
        hi = np.where(g >= 0, x, hi)
        newton = x - g / slope
        x = np.where((newton >= lo) & (newton <= hi), newton, 0.5 * (lo + hi))
    return x


def _newton_scalar(a: float, s: float, r0: float, p: float, q: float, n_steps: int) -> float:
    """The same iterations for one point, with an early exit (compiled with numba)."""
    lo = max(a, s) + scalar_math.log1p(scalar_math.exp(-abs(a - s)))
    g_lo, _ = _g_and_slope_scalar(lo, a, s, r0, p, q)
    hi = lo - g_lo
    g_hi, _ = _g_and_slope_scalar(hi, a, s, r0, p, q)
    frac = -g_lo / max(g_hi - g_lo, 1e-300)
    x = lo + min(max(frac, 0.0), 1.0) * (hi - lo)
    for _ in range(n_steps):
        g, slope = _g_and_slope_scalar(x, a, s, r0, p, q)
        if g <= 0:
            lo = x
        if g >= 0:
            hi = x
        newton = x - g / slope
        x_new = newton if lo <= newton <= hi else 0.5 * (lo + hi)
        if abs(x_new - x) <= 1e-15 * (1.0 + abs(x)):
            return x_new
        x = x_new
    return x


def _g_and_slope_scalar(x: float, a: float, s: float, r0: float, p: float, q: float):
    r = r0 - p * x
    softplus_r = max(r, 0.0) + scalar_math.log1p(scalar_math.exp(-abs(r)))
    log_t = s + q * softplus_r
    log_total = max(a, log_t) + scalar_math.log1p(scalar_math.exp(-abs(a - log_t)))
    w_b = scalar_math.exp(r - softplus_r)
    w_t = scalar_math.exp(log_t - log_total)
    return x - log_total, 1.0 + q * p * w_b * w_t


class KaplanRoot(Op):
    """``log L`` solving the Kaplan equation for 1-D inputs ``(a, s, r0, p, q)`` of
    :func:`solve_log_loss`, by safeguarded Newton iterations, **without gradient**.

    Its gradient is zero by design: :func:`solve_log_loss` follows it with one Newton step
    that carries the implicit-function-theorem gradient. ``perform`` runs the numpy
    iterations; under the numba backend (nutpie) a compiled per-point loop with early exit.
    """

    __props__ = ("n_steps",)

    def __init__(self, n_steps: int = NEWTON_STEPS) -> None:
        self.n_steps = int(n_steps)

    def make_node(self, *inputs: Any) -> Apply:
        import pytensor.tensor as pt

        tensors = [pt.as_tensor_variable(v) for v in inputs]
        if len(tensors) != 5 or any(t.ndim != 1 or t.dtype != "float64" for t in tensors):
            raise TypeError("KaplanRoot takes five float64 vectors of equal length")
        return Apply(self, tensors, [tensors[0].type()])

    def perform(self, node: Apply, inputs: list[np.ndarray], outputs: list[list[Any]]) -> None:
        outputs[0][0] = _newton_numpy(*inputs, n_steps=self.n_steps)

    def infer_shape(self, fgraph: Any, node: Apply, shapes: list[tuple]) -> list[tuple]:
        return [shapes[0]]

    def grad(self, inputs: list[Any], output_grads: list[Any]) -> list[Any]:
        import pytensor.tensor as pt

        return [pt.zeros_like(v) for v in inputs]


def _register_numba() -> None:
    try:
        from pytensor.link.numba.dispatch.basic import (
            numba_njit,
            register_funcify_default_op_cache_key,
        )
    except ImportError:  # pragma: no cover - numba is a dependency of nutpie
        return
    scalar_slope = numba_njit(_g_and_slope_scalar, fastmath=False)
    globals_for_jit = {"_g_and_slope_scalar": scalar_slope}

    @register_funcify_default_op_cache_key(KaplanRoot)
    def numba_funcify_kaplan_root(op: KaplanRoot, node: Any = None, **kwargs: Any):
        n_steps = op.n_steps
        scalar = numba_njit(_rebind(_newton_scalar, globals_for_jit), fastmath=False)

        @numba_njit(fastmath=False)
        def kaplan_root(a, s, r0, p, q):
            out = np.empty_like(a)
            for i in range(a.shape[0]):
                out[i] = scalar(a[i], s[i], r0[i], p[i], q[i], n_steps)
            return out

        key = source_cache_key(
            _newton_scalar, _g_and_slope_scalar, numba_funcify_kaplan_root
        )
        return kaplan_root, key


def _rebind(func: Any, replacements: dict[str, Any]) -> Any:
    """``func`` with some globals replaced (so numba sees the jitted helpers)."""
    import types

    return types.FunctionType(
        func.__code__, {**func.__globals__, **replacements}, func.__name__, func.__defaults__
    )


_register_numba()


def kaplan_loss(
    params: Any,
    steps: Any,
    batch_size: Any,
    Nc: Any,
    alphaN: Any,
    Sc: Any,
    alphaS: Any,
    Bstar: Any,
    alphaB: Any,
    math: ModuleType = np,
) -> Any:
    """Loss of a size-``params`` model after ``steps`` steps of ``batch_size`` tokens.

    Parameters
    ----------
    params, steps, batch_size
        ``N``, ``S`` and ``B`` (tokens per step), broadcastable.
    Nc, alphaN, Sc, alphaS, Bstar, alphaB
        Constants in the usual convention (e.g. :data:`KAPLAN_2020`).
    math
        ``numpy`` or ``pytensor.tensor``.

    Returns
    -------
    array-like
        ``L`` solving ``L = (Nc/N)^alphaN + (Sc (1 + Bcrit(L)/B) / S)^alphaS``.
    """
    log_l = solve_log_loss(
        alphaN * (math.log(Nc) - math.log(params)),
        alphaS * (math.log(Sc) - math.log(steps)),
        math.log(Bstar) - math.log(batch_size),
        1.0 / alphaB,
        alphaS,
        math=math,
    )
    return math.exp(log_l)


def lowest_loss(params: Any, Nc: Any, alphaN: Any) -> Any:
    """``L(N) = (Nc/N)^alphaN``, the loss a size-``N`` model converges to."""
    return np.exp(alphaN * (np.log(Nc) - np.log(params)))


def critical_batch_size(loss: Any, Bstar: Any, alphaB: Any) -> Any:
    """``Bcrit(L) = Bstar / L^(1/alphaB)`` in tokens."""
    return np.exp(np.log(Bstar) - np.log(loss) / alphaB)


def min_steps(params: Any, loss: Any, Nc: Any, alphaN: Any, Sc: Any, alphaS: Any) -> Any:
    """``Smin(L) = Sc (L - L(N))^(-1/alphaS)``: steps to reach ``loss`` at ``B >> Bcrit``.

    ``inf`` where ``loss <= L(N)`` (the model never reaches it).
    """
    excess = np.asarray(loss) - lowest_loss(params, Nc, alphaN)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.exp(np.log(Sc) - np.log(excess) / alphaS)
    return np.where(excess > 0, out, np.inf)


def min_tokens(
    params: Any, loss: Any, Nc: Any, alphaN: Any, Sc: Any, alphaS: Any, Bstar: Any, alphaB: Any
) -> Any:
    """``Emin(L) = Bcrit(L) Smin(L)``: tokens to reach ``loss`` at ``B << Bcrit``."""
    return critical_batch_size(loss, Bstar, alphaB) * min_steps(
        params, loss, Nc, alphaN, Sc, alphaS
    )


def steps_to_loss(
    params: Any,
    loss: Any,
    batch_size: Any,
    Nc: Any,
    alphaN: Any,
    Sc: Any,
    alphaS: Any,
    Bstar: Any,
    alphaB: Any,
) -> Any:
    """Steps ``S = Smin(L) (1 + Bcrit(L)/B)`` to reach ``loss`` at ``batch_size`` (inverse of
    :func:`kaplan_loss` in ``S``)."""
    ratio = critical_batch_size(loss, Bstar, alphaB) / np.asarray(batch_size)
    return min_steps(params, loss, Nc, alphaN, Sc, alphaS) * (1.0 + ratio)


def to_reference_scale(
    Nc: Any, alphaN: Any, Sc: Any, alphaS: Any, Bstar: Any, alphaB: Any,
    n0: float, s0: float, l0: float,
) -> dict[str, Any]:
    """Usual-convention constants -> ``theta`` (see the module docstring) at ``(N0, S0, L0)``."""
    return {
        "c_N": alphaN * (np.log(Nc) - np.log(n0)),
        "log_alphaN": np.log(alphaN),
        "c_S": alphaS * (np.log(Sc) - np.log(s0)),
        "log_alphaS": np.log(alphaS),
        "b_crit": np.log(Bstar) - np.log(l0) / alphaB,
        "log_alphaB": np.log(alphaB),
    }


def from_reference_scale(
    c_N: Any, log_alphaN: Any, c_S: Any, log_alphaS: Any, b_crit: Any, log_alphaB: Any,
    n0: float, s0: float, l0: float, math: ModuleType = np,
) -> dict[str, Any]:
    """``theta`` at ``(N0, S0, L0)`` -> ``Nc, alphaN, Sc, alphaS, Bstar, alphaB``.

    Works elementwise on numpy arrays, xarray objects or (with ``math``) PyTensor tensors.
    """
    alpha_n, alpha_s, alpha_b = math.exp(log_alphaN), math.exp(log_alphaS), math.exp(log_alphaB)
    return {
        "Nc": math.exp(c_N / alpha_n + np.log(n0)),
        "alphaN": alpha_n,
        "Sc": math.exp(c_S / alpha_s + np.log(s0)),
        "alphaS": alpha_s,
        "Bstar": math.exp(b_crit + np.log(l0) / alpha_b),
        "alphaB": alpha_b,
    }


def reference_log_loss(
    theta: Any,
    log_n_rel: Any,
    log_s_rel: Any,
    log_batch: Any,
    log_l0: float,
    n_steps: int | None = None,
    math: ModuleType = np,
) -> Any:
    """``log L`` for reference-scale ``theta[..., 6]`` at ``log(N/N0)``, ``log(S/S0)``, ``log B``.

    ``theta``'s last axis is :data:`KAPLAN_THETA`; the other arguments broadcast against
    ``theta[..., 0]``.
    """
    c_n, log_an, c_s, log_as, b_c, log_ab = (theta[..., i] for i in range(6))
    alpha_s = math.exp(log_as)
    inv_alpha_b = math.exp(-log_ab)
    return solve_log_loss(
        c_n - math.exp(log_an) * log_n_rel,
        c_s - alpha_s * log_s_rel,
        b_c + inv_alpha_b * log_l0 - log_batch,
        inv_alpha_b,
        alpha_s,
        n_steps=n_steps,
        math=math,
    )
