"""What every fitted law has in common: posterior, run table, metadata and their persistence.

:class:`FitBase` is the shared base of :class:`bayescale.ScalingLawFit` and
:class:`bayescale.KaplanFit`. Each subclass is a dataclass with the fields ``idata``, ``data``
and ``meta`` (in its own order) and says which parameters its law has; the base reads the
posterior, summarises it, stores post-processed draws and writes the fit to disk.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from bayescale.inference import Diagnostics, diagnose
from bayescale.models.design import Design
from bayescale.models.likelihood import ar_phi, numpy_segment_sum
from bayescale.persistence import fit_data_group
from bayescale.quiet import quiet_arviz

__all__ = ["FitBase"]

DesignT = TypeVar("DesignT")

#: Quantile columns of :meth:`FitBase.summary`.
_SUMMARY_QUANTILES = {
    "q5": lambda x: np.quantile(x, 0.05),
    "q50": lambda x: np.quantile(x, 0.5),
    "q95": lambda x: np.quantile(x, 0.95),
}


class FitBase(ABC, Generic[DesignT]):
    """Shared behaviour of a fitted hierarchical law (subclasses are dataclasses).

    Subclasses set the class attributes below and implement :attr:`design`,
    :meth:`_checkpoint_design` and :meth:`_add_run_effects_and_loglik`. A fit is built by
    :meth:`from_idata` only, after sampling and after loading alike.

    Attributes
    ----------
    idata
        :class:`arviz.InferenceData` of the fit.
    data
        The validated run table the model was fitted to.
    meta
        Law, options, resolved priors, reference scales, seed and sampler timing.
    """

    #: The law's parameters in the usual convention (posterior variables per family).
    _LAW_PARAMS: ClassVar[tuple[str, ...]]
    #: Posterior variables :attr:`diagnostics` checks, where the fit has them.
    _CHECKED_VARS: ClassVar[tuple[str, ...]]
    #: Noise and option parameters :meth:`summary` adds, where the fit has them.
    _SUMMARY_OPTIONAL: ClassVar[tuple[str, ...]]

    idata: az.InferenceData
    data: pd.DataFrame
    meta: dict[str, Any]
    _design: DesignT | None

    def __post_init__(self) -> None:
        self._design = None

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_idata(
        cls,
        idata: az.InferenceData,
        data: pd.DataFrame,
        meta: dict[str, Any],
        *,
        design: DesignT | None = None,
    ) -> Self:
        """Build a fit from its InferenceData, run table and metadata: the one constructor.

        :func:`bayescale.fit`, :class:`bayescale.refit.RefitModel` and
        :func:`bayescale.load` all build their fits here. An ``idata`` straight from the
        sampler (no ``fit_data`` group) is completed as a fit needs it: each run's offset is
        drawn from its conditional distribution where the model integrated it out, the
        ``log_likelihood`` group is replaced by one value per run (or config), and the groups
        ``observed_data`` and ``fit_data`` (run table and metadata) are added. An ``idata``
        that has ``fit_data`` (a saved fit's) is used as it is.

        Parameters
        ----------
        idata
            The sampler's InferenceData (modified in place), or a saved fit's.
        data
            The validated run table the model was fitted to (the fitted checkpoints only).
        meta
            The fit's metadata: ``law``, ``options``, ``priors``, the reference scales,
            ``random_seed`` and the sampler's settings and timing (see
            :func:`bayescale.fit.fit_meta`); JSON-serialisable, it is stored with the fit.
        design
            The design the model was built from, if at hand (else rebuilt from ``data`` and
            ``meta`` when first needed).

        Returns
        -------
        FitBase
            A fit of this class.
        """
        fit = cls(idata=idata, data=data, meta=meta, **cls._fields_from_meta(meta))
        fit._design = design
        if "fit_data" not in idata.groups():  # straight from the sampler
            fit._add_run_effects_and_loglik()
            fit._add_data_groups()
        return fit

    @classmethod
    def _fields_from_meta(cls, meta: dict[str, Any]) -> dict[str, Any]:
        """Dataclass fields of the subclass beyond ``idata``, ``data`` and ``meta``."""
        return {}

    @property
    @abstractmethod
    def design(self) -> DesignT:
        """Index arrays of the run table (rebuilt on demand after loading)."""

    @abstractmethod
    def _checkpoint_design(self) -> Design:
        """The :class:`~bayescale.models.design.Design` indexing the checkpoints."""

    @abstractmethod
    def _add_run_effects_and_loglik(self) -> None:
        """Draw the run offsets the model integrated out and store per-run log-likelihoods."""

    # ----------------------------------------------------------------- basics
    @property
    def families(self) -> list[str]:
        """Families in the fit."""
        return [str(f) for f in self.idata.posterior["family"].values]

    @property
    def random_seed(self) -> int:
        """The seed the fit was made with."""
        return int(self.meta["random_seed"])

    @property
    def diagnostics(self) -> Diagnostics:
        """Divergences, R-hat and ESS over the model's main parameters."""
        return diagnose(self.idata, self._checked_vars())

    def _checked_vars(self) -> list[str]:
        # a spread with shared components is checked through its free part: the shared ones
        # are constant 0, where R-hat and ESS are undefined
        post = self.idata.posterior
        return [n for n in self._CHECKED_VARS if n in post and f"{n}_free" not in post]

    def _seed(self, random_seed: int | None) -> int:
        """``random_seed``, or the fit's seed when it is ``None``."""
        return self.random_seed if random_seed is None else int(random_seed)

    def _rng(self, salt: int, random_seed: int | None = None) -> np.random.Generator:
        """The generator of one kind of draw (``salt``) under ``random_seed`` or the fit's."""
        return np.random.default_rng([self._seed(random_seed), salt])

    def posterior_draws(self, name: str) -> np.ndarray:
        """Posterior draws of ``name`` with chain and draw flattened into the first axis."""
        da = self.idata.posterior[name]
        return da.values.reshape((-1, *da.shape[2:]))

    def _check_family(self, family: str) -> str:
        if family not in self.families:
            raise KeyError(f"unknown family {family!r}; families in this fit: {self.families}")
        return family

    def _check_run(self, run: str) -> tuple[int, str]:
        """Index of a known ``run`` in the posterior's ``run`` dim, and its family."""
        runs = [str(r) for r in self.idata.posterior["run"].values]
        if run not in runs:
            raise KeyError(f"unknown run {run!r}")
        family = str(self.data.loc[self.data["run"] == run, "family"].iloc[0])
        return runs.index(run), family

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in self._repr_fields().items())
        return f"{type(self).__name__}({fields})"

    def _repr_fields(self) -> dict[str, Any]:
        post = self.idata.posterior
        return {
            "families": len(self.families),
            "runs": post.sizes.get("run", 0),
            "checkpoints": len(self.data),
            "chains": post.sizes["chain"],
            "draws": post.sizes["draw"],
        }

    # ----------------------------------------------------------------- parameters
    def law_parameters(self, family: str | None = None) -> xr.Dataset:
        """Posterior draws of the law's parameters (usual convention).

        ``E, A, alpha, B, beta`` for :class:`bayescale.ScalingLawFit`,
        ``Nc, alphaN, Sc, alphaS, Bstar, alphaB`` for :class:`bayescale.KaplanFit`.

        Parameters
        ----------
        family
            A family name, or ``None`` for all families (dim ``family``).
        """
        ds = self.idata.posterior[list(self._LAW_PARAMS)]
        return ds.sel(family=self._check_family(family)) if family is not None else ds

    def summary(self, hdi_prob: float = 0.9) -> pd.DataFrame:
        """Posterior summary of the law parameters, population values and noise scales.

        Returns
        -------
        pandas.DataFrame
            One row per parameter (e.g. ``alpha[olmo-ladder]``, ``alpha_pop``, ``sigma_seed``)
            with mean, sd, 5/50/95% quantiles, HDI bounds, r_hat, ess_bulk and ess_tail.
        """
        params = self._LAW_PARAMS
        names = [*params, *(f"{p}_pop" for p in params), "sigma_seed", "sigma_obs"]
        names += [n for n in self._SUMMARY_OPTIONAL if n in self.idata.posterior]
        table = az.summary(
            self.idata,
            var_names=names,
            hdi_prob=hdi_prob,
            stat_funcs=_SUMMARY_QUANTILES,
            extend=True,
            round_to="none",
        )
        keep = ["mean", "sd", "q5", "q50", "q95"]
        keep += [c for c in table.columns if c.startswith("hdi_")]
        keep += ["r_hat", "ess_bulk", "ess_tail"]
        return table[keep]

    # ----------------------------------------------------------------- post-processing
    def _ar_phi(self, design: Design, mode: str) -> np.ndarray | None:
        """Per-draw AR(1) factors of each checkpoint (``None`` without autocorrelation)."""
        if mode == "none":
            return None
        rho = self.posterior_draws("ar_rho")[:, None]
        return ar_phi(rho, design.obs_gap, design.obs_prev, mode)

    @staticmethod
    def _run_segments(design: Design) -> tuple[Callable[[Any], np.ndarray], np.ndarray]:
        """Per-run sum over checkpoints (sorted by run) and checkpoints per run (float)."""
        starts = np.flatnonzero(np.r_[True, design.obs_run[1:] != design.obs_run[:-1]])
        return numpy_segment_sum(starts), design.run_counts.astype(float)

    def _store_draws(
        self, name: str, dim: str, labels: np.ndarray, flat: np.ndarray, note: str | None = None
    ) -> None:
        """Add flattened draws ``(sample, dim)`` to the posterior as ``name``."""
        post = self.idata.posterior
        values = flat.reshape(post.sizes["chain"], post.sizes["draw"], -1)
        self.idata.posterior = post.assign(
            {name: (("chain", "draw", dim), values)}
        ).assign_coords({dim: labels})
        if note is not None:
            self.idata.posterior[name].attrs["note"] = note

    def _store_log_likelihood(self, loglik: np.ndarray, unit: str, labels: np.ndarray) -> None:
        """Replace the ``log_likelihood`` group by per-``unit`` draws ``(sample, unit)``."""
        post = self.idata.posterior
        ll = xr.Dataset(
            {
                "log_loss": (
                    ("chain", "draw", unit),
                    loglik.reshape(post.sizes["chain"], post.sizes["draw"], -1),
                )
            },
            coords={"chain": post["chain"], "draw": post["draw"], unit: labels},
        )
        ll["log_loss"].attrs["note"] = (
            f"log-likelihood of each {unit}'s checkpoints (leave-one-{unit}-out)"
        )
        if "log_likelihood" in self.idata.groups():
            del self.idata.log_likelihood
        self.idata.add_groups(log_likelihood=ll)

    # ----------------------------------------------------------------- persistence
    def _add_data_groups(self) -> None:
        checkpoints = self._checkpoint_design()
        obs = xr.Dataset(
            {"log_loss": ("obs", checkpoints.log_loss)},
            coords={"obs": np.arange(checkpoints.n_obs)},
        )
        groups = {"observed_data": obs, "fit_data": fit_data_group(self.data, self.meta)}
        for name in groups:
            if name in self.idata.groups():
                delattr(self.idata, name)
        with quiet_arviz():
            self.idata.add_groups(groups)

    def save(self, path: str | Path) -> Path:
        """Write the fit (posterior, data, options and metadata) to one NetCDF file.

        :func:`bayescale.load` reads it back as a fit of the same class.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._add_data_groups()  # write the data the fit holds now
        self.idata.to_netcdf(str(path))
        return path
