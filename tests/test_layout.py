"""The import graph of ``bayescale`` follows the data flow: no circle, no import from above.

Read from the source with :mod:`ast` (nothing is imported). Imports under
``if TYPE_CHECKING:`` are annotations only and are not edges. Imports inside a function
(*lazy*) are edges too: a lazy import from a higher layer, or one that closes a circle, must
be listed in :data:`KNOWN_LAZY` with its reason, and the list may only shrink.

No module imports another module's private (``_name``) names or reaches them through a name
it imported (``SomeClass._helper``); the exceptions are in :data:`KNOWN_PRIVATE`, which may
only shrink too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "bayescale"

#: Layers from the bottom up; a module may import from its own layer and the layers below.
#: A name ending in "." is a package prefix (the package and its submodules).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("version", "errors", "quiet", "compiled", "intervals", "derived", "persistence",
              "cache")),
    ("data", ("data.",)),
    ("laws", ("laws.",)),
    ("models", ("models.",)),
    ("sampling", ("inference",)),
    ("fits", ("fit_base", "parameter_table", "kaplan_fit", "fit", "refit", "seeds")),
    ("posterior use", ("compare", "planning", "simulate", "simulate_kaplan")),
    ("baselines", ("baselines.",)),
    ("scoring", ("scoring",)),
    ("execution", ("batch",)),
    ("evaluate and checks", ("evaluate.", "checks.", "validation", "prior_check")),
    ("report", ("report.",)),
    ("front ends", ("demo", "cli", "")),
)

#: Lazy imports that go up a layer or close a circle, kept for now (issue 22), with the reason.
KNOWN_LAZY: dict[tuple[str, str], str] = {
    ("fit", "planning"): "ScalingLawFit.next_runs, the documented shortcut to planning.next_runs",
}


def _module_names() -> dict[str, Path]:
    """Module name relative to ``bayescale`` ("" for the package itself) -> file."""
    out = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _module_names()


def _resolve(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The bayescale modules (relative names) an import statement loads."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = ["bayescale", *(module.split(".") if module else [])]
            if not is_package:
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            parent = ".".join([*base, *([node.module] if node.module else [])])
        else:
            parent = node.module or ""
        names = []
        for alias in node.names:
            sub = f"{parent}.{alias.name}"
            names.append(sub if sub.removeprefix("bayescale.") in MODULES else parent)
    out = []
    for name in names:
        if name == "bayescale" or name.startswith("bayescale."):
            rel = name.removeprefix("bayescale").removeprefix(".")
            if rel != module:
                out.append(rel)
    return out


def _edges() -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """(module-level edges, lazy edges) between bayescale modules, TYPE_CHECKING excluded."""
    top: set[tuple[str, str]] = set()
    lazy: set[tuple[str, str]] = set()
    for module, path in MODULES.items():
        is_package = path.name == "__init__.py"

        def visit(node: ast.AST, in_function: bool, module=module, is_package=is_package) -> None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                    for grandchild in child.orelse:
                        visit(grandchild, in_function)
                    continue
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in _resolve(child, module, is_package):
                        (lazy if in_function else top).add((module, target))
                function = isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                visit(child, in_function or function)

        visit(ast.parse(path.read_text()), False)
    return top, lazy - top


TOP, LAZY = _edges()


#: Private names a module takes from another, kept for now (issue 22), with the reason:
#: (importing module, module the name comes from, name).
KNOWN_PRIVATE: dict[tuple[str, str, str], str] = {}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _private_uses_in(module: str, tree: ast.AST, is_package: bool) -> set[tuple[str, str, str]]:
    """(module, source module, name) of every private name ``module`` takes from another.

    Both ``from bayescale.x import _name`` and ``bound._name``, where ``bound`` is a name the
    module imported from bayescale (a module, class or function), count.
    """
    found: set[tuple[str, str, str]] = set()
    bound: dict[str, str] = {}  # local name -> the bayescale module it came from
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            targets = _resolve(node, module, is_package)
            if not targets and not (node.module or "").startswith("bayescale"):
                continue
            source = (node.module or "").removeprefix("bayescale").removeprefix(".")
            if node.level:
                source = targets[0] if targets else source
            for alias in node.names:
                if _is_private(alias.name):
                    found.add((module, source, alias.name))
                bound[alias.asname or alias.name] = source
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "bayescale" or alias.name.startswith("bayescale."):
                    local = alias.asname or alias.name.split(".")[0]
                    bound[local] = alias.name.removeprefix("bayescale").removeprefix(".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in bound:
                found.add((module, bound[root.id], node.attr))
    return found


PRIVATE = {
    use
    for module, path in MODULES.items()
    for use in _private_uses_in(module, ast.parse(path.read_text()), path.name == "__init__.py")
}


def _layer(module: str) -> int:
    for rank, (_, members) in enumerate(LAYERS):
        for member in members:
            if member.endswith("."):
                if module == member[:-1] or module.startswith(member):
                    return rank
            elif module == member:
                return rank
    raise KeyError(module)


def _cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, list[str]] = {}
    for a, b in edges:
        graph.setdefault(a, []).append(b)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, []):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return found


def test_every_module_has_a_layer():
    missing = []
    for module in MODULES:
        try:
            _layer(module)
        except KeyError:
            missing.append(module)
    assert not missing, f"add these modules to LAYERS: {missing}"


def test_module_level_imports_have_no_circle():
    assert _cycles(TOP) == []


def test_module_level_imports_do_not_go_up():
    upward = sorted((a, b) for a, b in TOP if _layer(b) > _layer(a))
    assert upward == [], f"module-level imports from a higher layer: {upward}"


def test_lazy_imports_neither_go_up_nor_close_a_circle():
    allowed = set(KNOWN_LAZY)
    upward = {(a, b) for a, b in LAZY if _layer(b) > _layer(a)}
    assert upward <= allowed, f"lazy imports from a higher layer: {sorted(upward - allowed)}"
    assert _cycles((TOP | LAZY) - allowed) == []


@pytest.mark.parametrize("edge", sorted(KNOWN_LAZY))
def test_known_lazy_imports_still_exist(edge):
    """A listed exception that is gone must leave the list, so the list only shrinks."""
    assert edge in LAZY, f"{edge} no longer imports lazily: remove it from KNOWN_LAZY"


def test_no_module_takes_another_modules_private_names():
    unlisted = sorted(PRIVATE - set(KNOWN_PRIVATE))
    assert unlisted == [], f"private names taken from another module: {unlisted}"


def test_known_private_uses_still_exist():
    """A listed exception that is gone must leave the list, so the list only shrinks."""
    gone = sorted(set(KNOWN_PRIVATE) - PRIVATE)
    assert gone == [], f"no longer used: remove {gone} from KNOWN_PRIVATE"


def test_private_use_detection():
    """The scan sees both forms: a private name imported, and one reached through a name."""
    source = (
        "import bayescale\n"
        "from bayescale.fit import ScalingLawFit, _hidden\n"
        "def f(fit):\n"
        "    from .inference import _sample_pymc\n"
        "    return ScalingLawFit._from_sampling, bayescale.batch._store, fit._own, _hidden\n"
    )
    assert _private_uses_in("validation", ast.parse(source), False) == {
        ("validation", "fit", "_hidden"),
        ("validation", "inference", "_sample_pymc"),
        ("validation", "fit", "_from_sampling"),
        ("validation", "", "_store"),
    }


def test_persistence_and_intervals_sit_below_the_fits():
    for module in ("fit_base", "kaplan_fit", "fit"):
        assert ("persistence", module) not in TOP | LAZY
    assert ("fit_base", "fit") not in TOP | LAZY
    assert ("fit", "report.table") not in TOP | LAZY


def test_a_fit_is_built_in_one_place():
    """Only ``FitBase.from_idata`` calls a fit class: no module assembles a fit itself."""
    classes = {"ScalingLawFit", "KaplanFit", "cls"}
    callers = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.id if isinstance(node.func, ast.Name) else None
                if name in classes and any(k.arg == "idata" for k in node.keywords):
                    callers.append(module)
    assert callers == ["fit_base"]


# ------------------------------------------------------------------------------- public API
def test_every_name_in_all_resolves_and_is_documented():
    import inspect

    import bayescale

    assert len(set(bayescale.__all__)) == len(bayescale.__all__)
    undocumented = []
    for name in bayescale.__all__:
        obj = getattr(bayescale, name)  # raises if the name does not resolve
        if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismodule(obj):
            if not (inspect.getdoc(obj) or "").strip():
                undocumented.append(name)
    assert undocumented == []


def test_top_level_entry_points():
    import importlib
    import types

    import bayescale as bs

    compare_module = importlib.import_module("bayescale.compare")
    evaluate_module = importlib.import_module("bayescale.evaluate")
    planning_module = importlib.import_module("bayescale.planning")
    assert bs.compare is compare_module.compare
    assert bs.compare_models is compare_module.compare_models
    assert bs.evaluate is evaluate_module.evaluate
    assert bs.next_runs is planning_module.next_runs
    assert bs.credible_intervals is bs.report.credible_intervals
    assert isinstance(bs.report, types.ModuleType) and callable(bs.report.html)
    assert isinstance(bs.baselines, types.ModuleType) and callable(bs.baselines.fit_huber)
    assert isinstance(bs.checks, types.ModuleType) and callable(bs.checks.sbc_ranks)
    assert bs.prior_predictive is bs.checks.prior_predictive
    assert bs.checks.simulate is bs.simulate and bs.checks.simulate_kaplan is bs.simulate_kaplan
    # the modules behind functions of the same name stay importable by their full path
    from bayescale.compare import compare_models  # noqa: F401
    from bayescale.evaluate import METHODS, grids  # noqa: F401

    assert callable(grids.are_grid_models_fraction) and callable(bs.evaluate)


#: The public names of the modules that became subpackages, as they were before (issue 22).
SUBPACKAGE_ALL: dict[str, tuple[str, ...]] = {
    "baselines": (
        "DEFAULT_HUBER_GRID", "EXPONENT_BOUNDS", "HOFFMANN_GRID", "MUENNIGHOFF_ALPHA",
        "MUENNIGHOFF_LOG_A", "BootstrapFit", "ConstantFit", "FixedTermFit", "PointFit",
        "best_loss_baseline", "bootstrap_huber", "fit_fixed_a_alpha", "fit_huber",
        "fit_least_squares", "huber_grid", "most_trained_baseline",
    ),
    "evaluate": (
        "FINDINGS", "METHODS", "TRANSFER_METHODS", "Findings", "absolute_relative_error",
        "are_grid_models_fraction", "are_grid_models_scaleup", "bootstrap_mean_interval",
        "choose_source_run", "crps_from_samples", "evaluate", "fit_and_predict",
        "interval_coverage", "interval_width", "paper_findings", "plot_are_heatmap",
        "score_prediction", "signed_relative_error", "summarize_differences", "transfer",
    ),
}


@pytest.mark.parametrize("package", sorted(SUBPACKAGE_ALL))
def test_split_modules_keep_their_public_names(package):
    """``bayescale.baselines`` and ``bayescale.evaluate`` became subpackages with the same
    ``__all__``; each name is the object of the submodule that defines it (or of scoring)."""
    import importlib

    module = importlib.import_module(f"bayescale.{package}")
    assert list(module.__all__) == list(SUBPACKAGE_ALL[package])
    for name in module.__all__:
        obj = getattr(module, name)
        home = getattr(obj, "__module__", None)
        if home is not None and home.startswith(f"bayescale.{package}."):
            assert getattr(importlib.import_module(home), name) is obj


def test_moved_names_stay_importable_from_their_old_modules():
    """scoring's names from evaluate, refit's and checks' from validation, checks' prior
    predictive from prior_check: the same objects."""
    import importlib

    evaluate_module = importlib.import_module("bayescale.evaluate")
    scoring = importlib.import_module("bayescale.scoring")
    refit = importlib.import_module("bayescale.refit")
    validation = importlib.import_module("bayescale.validation")
    checks = importlib.import_module("bayescale.checks")
    prior_check = importlib.import_module("bayescale.prior_check")
    for name in ("METHODS", "score_prediction", "fit_and_predict", "plot_are_heatmap",
                 "bootstrap_mean_interval", "absolute_relative_error", "crps_from_samples"):
        assert getattr(evaluate_module, name) is getattr(scoring, name)
        assert name in evaluate_module.__all__
    refit_names = ("RefitModel", "fit_same_layout", "layout_key", "cached_refit_model")
    for name in refit_names:
        assert getattr(validation, name) is getattr(refit, name)
    validation_names = (
        "SBC_EXTRA", "SBC_MAIN", "PriorDraw", "Uniformity", "ar1_noise", "draw_from_prior",
        "inject_spike", "plot_rank_histograms", "posterior_sbc_draws", "predictive_coverage",
        "rank_uniformity", "run_coverage_replication", "run_parallel", "run_sbc_replication",
        "sbc_design", "sbc_ranks", "split_held_out", "summarise_coverage", "thin_indices",
    )
    assert sorted(validation.__all__) == sorted((*validation_names, *refit_names))
    for name in validation_names:
        assert getattr(validation, name) is getattr(checks, name)
        assert name in checks.__all__
    assert prior_check.prior_predictive is checks.prior_predictive
    assert prior_check.__all__ == ["prior_predictive"]


_FRESH_IMPORT = """
import json, sys
import bayescale as bs
heavy = sorted({m.split(".")[0] for m in sys.modules} & {
    "arviz", "matplotlib", "numba", "numpy", "pandas", "pymc", "pytensor", "scipy", "xarray"})
loaded_early = sorted(m for m in sys.modules if m.startswith("bayescale."))
listed = sorted(set(bs.__all__) - set(dir(bs)))
import importlib, importlib.util, types
named_like_modules = [n for n in bs.__all__ if not n.startswith("_")
                      and importlib.util.find_spec(f"bayescale.{n}") is not None]
for n in named_like_modules:  # the import system binds each submodule to the package
    importlib.import_module(f"bayescale.{n}")
modules = sorted(n for n in bs.__all__ if isinstance(getattr(bs, n), types.ModuleType))
shadowed = {n: callable(getattr(bs, n)) for n in named_like_modules if n not in modules}
unresolved = [n for n in bs.__all__ if getattr(bs, n, None) is None]
print(json.dumps({"heavy": heavy, "early": loaded_early, "not_in_dir": listed,
                  "shadowed": shadowed, "modules": modules, "unresolved": unresolved,
                  "submodule": type(bs.refit).__name__}))
"""


def test_import_is_lazy_and_every_name_in_all_resolves_in_a_fresh_process():
    """``import bayescale`` loads no numerical stack; each ``__all__`` name loads on first use,
    ``dir()`` lists them all, and the functions named like their modules stay functions when
    those modules are imported by their full path."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _FRESH_IMPORT], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    assert found["heavy"] == []
    assert set(found["early"]) <= {"bayescale.cache", "bayescale.compiled", "bayescale.errors",
                                   "bayescale.version"}
    assert found["not_in_dir"] == []
    assert found["modules"] == ["baselines", "checks", "report"]
    assert found["shadowed"] == dict.fromkeys(
        ("compare", "evaluate", "fit", "simulate", "simulate_kaplan"), True)
    assert found["unresolved"] == []
    assert found["submodule"] == "module"


_FRESH_SUBPACKAGES = """
import importlib, json, pkgutil, types
import bayescale.evaluate.grids
import bayescale as bs
after_grids = callable(bs.evaluate)
from bayescale.evaluate import transfer
after_from = callable(bs.evaluate) and callable(transfer)
imported = []
for package in ("baselines", "checks", "evaluate"):
    path = importlib.import_module(f"bayescale.{package}").__path__
    for info in pkgutil.iter_modules(path):
        imported.append(importlib.import_module(f"bayescale.{package}.{info.name}").__name__)
evaluate_package = importlib.import_module("bayescale.evaluate")
print(json.dumps({
    "after_grids": after_grids, "after_from": after_from, "imported": sorted(imported),
    "evaluate": bs.evaluate is evaluate_package.evaluate,
    "names_stay": all(not isinstance(getattr(evaluate_package, n), types.ModuleType)
                      for n in evaluate_package.__all__),
    "modules": [isinstance(getattr(bs, n), types.ModuleType)
                for n in ("baselines", "checks", "report")],
    "old_paths": [callable(importlib.import_module("bayescale.validation").sbc_ranks),
                  callable(importlib.import_module("bayescale.prior_check").prior_predictive)],
}))
"""


def test_subpackages_in_a_fresh_process():
    """``bayescale.evaluate`` stays the function after its submodules are imported (by their
    full path or from the subpackage), every submodule of the subpackages imports, and the
    old module paths still work."""
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _FRESH_SUBPACKAGES], capture_output=True,
                          text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout.splitlines()[-1])
    expected = {m for m in MODULES if m.startswith(("baselines.", "checks.", "evaluate."))}
    assert set(found.pop("imported")) == {f"bayescale.{m}" for m in expected}
    assert found == {"after_grids": True, "after_from": True, "evaluate": True,
                     "names_stay": True, "modules": [True, True, True],
                     "old_paths": [True, True]}


def test_unknown_attributes_raise_attribute_error():
    import bayescale

    with pytest.raises(AttributeError, match="no_such_name"):
        bayescale.no_such_name  # noqa: B018
    assert not hasattr(bayescale, "_private_thing")
    assert not hasattr(bayescale, "data.prepare")


def test_the_chinchilla_names_agree_where_they_are_still_spelled_twice():
    """The simulator draws the model's theta components; the model's law parameters are the
    law's own tuple."""
    from bayescale.laws.chinchilla import CHINCHILLA_PARAMS
    from bayescale.models.hierarchical import LAW_PARAMS
    from bayescale.models.priors import THETA_NAMES
    from bayescale.simulate import DEFAULT_FAMILY_SD, DEFAULT_POPULATION

    assert tuple(DEFAULT_POPULATION) == tuple(DEFAULT_FAMILY_SD) == THETA_NAMES
    assert LAW_PARAMS is CHINCHILLA_PARAMS
