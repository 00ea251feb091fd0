"""A model compiled once per run-table layout and refitted to new losses on that layout.

:func:`bayescale.fit` builds and compiles the model for every data set. Studies that fit many
data sets with the same families, runs, tokens and schedules (SBC, coverage, grids of fits on
Dask) compile it once per layout: :class:`RefitModel` holds the compiled model,
:func:`cached_refit_model` keeps a few per process (keyed by :func:`layout_key`) and
:func:`fit_same_layout` fits through them. The fits are :class:`bayescale.ScalingLawFit`,
built by :meth:`bayescale.ScalingLawFit.from_idata` as :func:`bayescale.fit` builds its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.validate import validate
from bayescale.fit import ScalingLawFit, default_config_effects, fit_meta
from bayescale.inference import SamplerSettings, compile_nutpie, sample_compiled_nutpie
from bayescale.models.design import Design, build_design
from bayescale.models.hierarchical import build_model
from bayescale.models.options import ModelOptions
from bayescale.models.priors import resolve_priors
from bayescale.models.scaling import sampling_coordinates

__all__ = [
    "REFIT_CACHE_SIZE",
    "RefitModel",
    "cached_refit_model",
    "fit_same_layout",
    "layout_key",
]


@dataclass(frozen=True)
class _SharedLossDesign(Design):
    """A design whose ``log_loss`` is a PyTensor shared variable (values swapped per refit)."""

    fixed_n_obs: int = 0

    @property
    def n_obs(self) -> int:
        return self.fixed_n_obs


class RefitModel:
    """The model compiled once for a run-table layout, refitted to new losses on that layout.

    :func:`bayescale.fit` builds and compiles the model for every data set (about half of a
    small fit's cost). Studies that fit many data sets with the same families, runs and tokens
    (SBC, coverage) build the same model with the log-losses in a shared variable and the
    starting point in shared variables, compile it once, and per data set only swap the data,
    recompute the least-squares start and the sampling coordinates, and sample. Everything else
    (model, priors, start, coordinates, jitter, nutpie settings, post-processing into a
    :class:`bayescale.ScalingLawFit`) is what :func:`bayescale.fit` does. The log density is
    :func:`bayescale.fit`'s to rounding; the draws are not bit-identical, because ``fit`` takes
    the coordinates as constants, which the compiler folds differently.

    Parameters
    ----------
    template
        Run table fixing the layout (its losses only set the compile-time values).
    priors
        Prior overrides, as for :func:`bayescale.fit`.
    n0, d0
        Reference scales (default: the template's geometric means).
    likelihood, autocorrelation
        Model options, as for :func:`bayescale.fit`.
    draws, tune, chains, target_accept, max_tree_depth
        Sampler settings, as for :func:`bayescale.fit`.
    """

    _LOSS_NAME = "bayescale_refit_log_loss"

    def __init__(
        self,
        template: pd.DataFrame,
        *,
        priors: Mapping[str, Mapping[str, float]] | None = None,
        n0: float | None = None,
        d0: float | None = None,
        likelihood: str = "normal",
        autocorrelation: str | None = None,
        draws: int = 1000,
        tune: int = 1000,
        chains: int = 4,
        target_accept: float = 0.9,
        max_tree_depth: int = 10,
    ) -> None:
        import pytensor

        if autocorrelation is None:
            autocorrelation = "log_tokens" if likelihood == "normal" else "none"
        data = validate(template)
        self.options = ModelOptions(
            likelihood=likelihood,  # type: ignore[arg-type]
            autocorrelation=autocorrelation,  # type: ignore[arg-type]
            config_effects=default_config_effects(data, likelihood),
        )
        self.design = build_design(data, n0=n0, d0=d0)
        self.priors = resolve_priors(self.design.n0, self.design.d0, priors)
        self.settings = SamplerSettings(draws=draws, tune=tune, chains=chains,
                                        target_accept=target_accept, progressbar=False,
                                        max_tree_depth=max_tree_depth)
        fields_ = {f.name: getattr(self.design, f.name) for f in dataclasses.fields(Design)}
        self._loss = loss = pytensor.shared(self.design.log_loss.copy(), name=self._LOSS_NAME)
        shared_design = _SharedLossDesign(
            **{**fields_, "log_loss": loss}, fixed_n_obs=self.design.n_obs
        )
        coordinates = sampling_coordinates(self.design, self.priors, self.options)
        self._shared = coordinates.shared_variables()
        self.model = model = build_model(
            shared_design, self.priors, self.options, **coordinates.model_inputs(self._shared)
        )
        self._start = {name: self._shared[f"start_{name}"] for name in coordinates.start}
        jitter = {model[n] for n in coordinates.jitter if n in model.named_vars}
        self._compiled = compile_nutpie(model, self._start, jitter)

    def _check_layout(self, design: Design) -> None:
        ref = self.design
        same = (
            np.array_equal(design.runs, ref.runs)
            and np.array_equal(design.families, ref.families)
            and np.array_equal(design.obs_run, ref.obs_run)
            and np.allclose(design.obs_log_d, ref.obs_log_d)
            and np.allclose(design.run_log_n, ref.run_log_n)
        )
        if not same:
            raise ValueError("runs do not have the template's families, runs and tokens")

    def fit(
        self, runs: pd.DataFrame, random_seed: int = 0, cores: int | None = None
    ) -> ScalingLawFit:
        """Fit the compiled model to ``runs`` (same layout as the template).

        Parameters
        ----------
        runs
            Run table with the template's families, runs and tokens.
        random_seed
            Sampler seed.
        cores
            Threads the chains run in (default: one per chain, at most the machine's cores);
            the draws do not depend on it.

        Returns
        -------
        bayescale.ScalingLawFit
        """
        data = validate(runs)
        design = build_design(data, n0=self.design.n0, d0=self.design.d0)
        self._check_layout(design)
        coordinates = sampling_coordinates(design, self.priors, self.options)
        updates = {self._LOSS_NAME: design.log_loss}
        self._loss.set_value(design.log_loss)  # keeps self.model on the current data set
        for name, value in coordinates.values().items():
            self._shared[name].set_value(value)  # read by the initial-point function
            if self._shared[name].name in self._compiled.shared_data:  # copied into the kernel
                updates[self._shared[name].name] = value
        compiled = self._compiled.with_data(**updates)
        settings = dataclasses.replace(self.settings, random_seed=int(random_seed))
        idata = sample_compiled_nutpie(compiled, settings, cores=cores)
        idata.sample_stats.attrs["compile_seconds"] = 0.0  # compiled once, in __init__
        meta = fit_meta(self.options, self.priors, design, settings, idata)
        return ScalingLawFit.from_idata(idata, data, meta, design=design)


#: Compiled models of this process by layout and settings, least recently used first.
_REFIT_CACHE: dict[str, RefitModel] = {}
#: Layouts kept compiled per process.
REFIT_CACHE_SIZE = 4


def layout_key(runs: pd.DataFrame, **kwargs: Any) -> str:
    """Key of a validated run table's layout and the model settings a :class:`RefitModel` fixes.

    Every column but ``loss`` is part of the layout (families, runs, sizes, tokens, and the
    learning-rate schedule columns, which enter the model as constants).

    Parameters
    ----------
    runs
        Validated run table.
    **kwargs
        Arguments of :class:`RefitModel` (``progressbar`` is ignored).

    Returns
    -------
    str
        A hex digest.
    """
    kwargs = {k: v for k, v in kwargs.items() if k != "progressbar"}
    cols = [c for c in runs.columns if c != "loss"]
    digest = hashlib.sha256(json.dumps(cols).encode())
    digest.update(pd.util.hash_pandas_object(runs[cols], index=False).to_numpy().tobytes())
    digest.update(json.dumps(kwargs, sort_keys=True, default=str).encode())
    return digest.hexdigest()


def cached_refit_model(runs: pd.DataFrame, **kwargs: Any) -> tuple[RefitModel, bool]:
    """This process's :class:`RefitModel` for the layout of ``runs``, compiled on first use.

    Up to :data:`REFIT_CACHE_SIZE` layouts stay compiled (least recently used dropped first),
    so a worker that alternates between a few layouts compiles each once.

    Parameters
    ----------
    runs
        Validated run table (its layout; the losses do not matter).
    **kwargs
        Arguments of :class:`RefitModel` (``progressbar`` is ignored).

    Returns
    -------
    (RefitModel, bool)
        The model and whether it was compiled by this call.
    """
    kwargs = {k: v for k, v in kwargs.items() if k != "progressbar"}
    key = layout_key(runs, **kwargs)
    model = _REFIT_CACHE.pop(key, None)
    compiled = model is None
    if model is None:
        while len(_REFIT_CACHE) >= REFIT_CACHE_SIZE:
            _REFIT_CACHE.pop(next(iter(_REFIT_CACHE)))
        model = RefitModel(runs, **kwargs)
    _REFIT_CACHE[key] = model  # most recently used last
    return model, compiled


def fit_same_layout(runs: pd.DataFrame, random_seed: int = 0, **kwargs: Any) -> ScalingLawFit:
    """:func:`bayescale.fit` through a :class:`RefitModel` cached per layout and settings.

    The first call in a process compiles the model for the layout of ``runs``; later calls with
    the same families, runs, tokens and keyword arguments reuse it. The posterior is the one
    :func:`bayescale.fit` returns with the same arguments and seed on the same checkpoints
    (:func:`bayescale.fit` leaves out each run's first ``fit_from`` share first; this does not).

    Parameters
    ----------
    runs
        Run table.
    random_seed
        Sampler seed.
    **kwargs
        ``priors``, ``n0``, ``d0``, ``likelihood``, ``autocorrelation``, ``draws``, ``tune``,
        ``chains``, ``target_accept``, ``max_tree_depth`` (``progressbar`` is ignored).

    Returns
    -------
    bayescale.ScalingLawFit
    """
    data = validate(runs)
    model, _ = cached_refit_model(data, **kwargs)
    return model.fit(data, random_seed=random_seed)
