"""The contract between the core and a framework plugin, and the registry of plugins.

A plugin is registered under the entry-point group ``convbench.backends`` and names a
:class:`Backend` subclass. The core only ever instantiates a backend inside a worker
process (:mod:`convbench.worker`), so importing a framework stays out of the core's
process. What a plugin declares as class attributes (its executions and their
descriptions, backend-implemented variants, virtual environment, install hint,
conformance) the core reads in any process (:func:`declarations`): loading the entry
point imports the plugin module only. So a plugin module must import its framework
lazily (inside methods), and do nothing else at import, so that loading it never fails
just because the framework is missing, nor changes the process that loads it.
"""

from __future__ import annotations

import functools
import importlib
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from convbench.cases import GENERIC_EXECUTIONS, Case
from convbench.data import Tensors
from convbench.graph import Graph

if TYPE_CHECKING:
    from convbench.peaks import PeakWork
    from convbench.timing import TimingConfig
    from convbench.variants import VariantKind

ENTRY_POINT_GROUP = "convbench.backends"


@dataclass
class BackendInfo:
    """What a backend reports about itself in the process that hosts it."""

    name: str
    available: bool
    version: str | None = None
    devices: list[str] = field(default_factory=list)
    reason: str | None = None  #: why it is unavailable, and how to install it
    environment: dict[str, Any] = field(default_factory=dict)  #: GPU, driver, CUDA, cuDNN ...


@functools.cache
def import_error(*modules: str) -> str | None:
    """Why importing ``modules`` fails in this process (``Type: message`` of the first
    that fails: a broken install raises more than ImportError), or None. Asked once."""
    for module in modules:
        try:
            importlib.import_module(module)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
    return None


class UnsupportedCase(Exception):
    """Raised by :meth:`Backend.prepare` when a case cannot run here; becomes a skipped row."""


class Prepared(ABC):
    """One case built in a framework, with its weights loaded, ready to verify and time."""

    @abstractmethod
    def check(self) -> dict[str, np.ndarray]:
        """Run the case once and return float64 NCHW arrays to verify.

        Inference: ``{output_name: value}``. Training: one full step (forward, loss =
        sum(output * cotangent), backward, SGD update) returning the outputs and
        ``grad:<name>`` for every graph input and parameter, captured before the update.
        """

    @abstractmethod
    def step(self) -> None:
        """One timed iteration (an inference forward, or a training step); may be async."""

    def sync(self) -> None:
        """Wait until all work queued by :meth:`step` has finished on the device."""

    def device_sampler(self) -> Callable[[int], float] | None:
        """Optional device-event timer: runs ``n`` steps and returns their device seconds."""
        return None

    def peak_memory_bytes(self) -> int | None:
        """Peak device memory of the case, where the framework can tell."""
        return None

    def cache_flusher(self) -> Callable[[], None] | None:
        """Optional: a function evicting the device's last-level cache, for cold-cache host
        timing (``TimingConfig.cold_cache``); a device sampler flushes by itself."""
        return None

    def profile(self, steps: int) -> list[dict[str, Any]] | None:
        """Optional: per-op time of ``steps`` steps from the framework's own profiler.

        One dict per (graph node, framework op): ``op`` (the framework's name), ``node``
        (the graph node it computes; None for work outside the graph: loss, optimizer),
        ``self_time`` (seconds per step, excluding nested ops), ``count`` (calls per
        step), optionally ``phase`` (forward/backward/update) and ``category`` (else the
        core derives it from the node, :func:`convbench.profile.categorize`). Add key
        ``source`` to every row to say which profiler and clock it is. None: no profiler.
        """
        return None

    def details(self) -> dict[str, Any]:
        """Facts about how the case actually ran (layout used, compiler, algorithm ...)."""
        return {}

    def close(self) -> None:
        """Release what the case holds."""


@dataclass(frozen=True)
class Conformance:
    """How ``tests/test_conformance.py`` holds a backend: every op, variant, layout and mode
    verified against the reference (float32, CPU, one thread). Declared by the plugin
    class (:attr:`Backend.conformance`) and read without instantiating it."""

    #: The execution its check runs in.
    execution: str = "eager"
    #: What it legitimately cannot run, each as (case field, value, words its skip reason
    #: holds): exactly those cases must be skipped with that reason; the others must verify.
    cannot: tuple[tuple[str, Any, str], ...] = ()
    #: Why the module does not hold it at all (its own tests do), or None: it is held.
    exempt: str | None = None
    #: Set when its NHWC model is its NCHW model with a transpose at each boundary (the
    #: ONNX-based backends), saying so: the layer workloads check NHWC, the families (their
    #: ops already checked in NCHW, the boundary by the layers) run in NCHW only.
    boundary_layout: str | None = None


class Backend(ABC):
    """A framework that lowers convbench graphs and runs them."""

    name: str = ""
    #: How to install what the backend needs: the end of an unavailable info's reason.
    install_hint: str = ""
    #: The framework's modules: :meth:`info` says the backend is unavailable, with the
    #: import error and :attr:`install_hint`, when one of them does not import.
    requires: tuple[str, ...] = ()
    #: Backend-implemented variants it runs (:func:`convbench.variants.backend_variants`:
    #: the core's ``kernel`` and those plugins define); the worker skips cases of the others.
    variants: frozenset[str] = frozenset()
    #: Backend-implemented variant kinds it defines (a :class:`~convbench.variants.VariantKind`
    #: whose rewrite is the identity, and whose ``applies_to`` names the nodes its own
    #: implementation replaces): they join the variants suites accept; list them in
    #: :attr:`variants` too.
    variant_kinds: tuple[VariantKind, ...] = ()
    #: Executions it runs, each mapped to the name of the form it runs (an alias maps to its
    #: canonical name, e.g. tensorflow's ``compiled`` to ``xla``): the generic names
    #: (:data:`convbench.cases.GENERIC_EXECUTIONS`) and names of its own, which join the
    #: vocabulary a suite may use (:func:`execution_vocabulary`). The base
    #: :meth:`skip_reason` skips cases of the others, and the worker records the form in
    #: ``details["execution_used"]``.
    executions: Mapping[str, str] = MappingProxyType({"eager": "eager"})
    #: What each execution is in this backend (its own names, and what a generic name runs
    #: here), shown in ``convbench list``; a name without one is described by its form.
    execution_descriptions: Mapping[str, str] = MappingProxyType({})
    #: A virtual environment of its own, relative to the checkout (or absolute), e.g.
    #: ``.venv-mxnet``: its ``bin/python`` hosts the backend's workers when it exists and
    #: neither the suite nor the environment names another (:func:`convbench.runner.interpreter_for`).
    venv: str | None = None
    #: How ``tests/test_conformance.py`` holds it (:class:`Conformance`).
    conformance: Conformance = Conformance()

    def info(self) -> BackendInfo:
        """Availability, version, devices and environment, without raising.

        The shared implementation: a framework that does not import
        (:meth:`import_error`) is unavailable with the error and :attr:`install_hint`;
        otherwise :meth:`probe` answers, and its first available answer is kept (in
        ``_info``). A :meth:`probe` that raises makes the backend unavailable."""
        cached = getattr(self, "_info", None)
        if cached is not None:
            return cached
        error = self.import_error()
        if error is not None:
            return self.unavailable(f"{self.name} is not importable ({error})")
        try:
            info = self.probe()
        except Exception as exc:  # never raise from info()
            return BackendInfo(self.name, False, reason=f"{self.name} failed to report its environment: {type(exc).__name__}: {exc}")
        if info.available:
            self._info = info
        return info

    def import_error(self) -> str | None:
        """Why the framework (:attr:`requires`) does not import here, or None."""
        return import_error(*self.requires)

    def probe(self) -> BackendInfo:
        """The info of a backend whose framework imports: version, devices, environment
        (may raise: :meth:`info` catches it). Override this, or :meth:`info` itself."""
        raise NotImplementedError(f"{type(self).__name__} implements neither info() nor probe()")

    def unavailable(self, why: str, version: str | None = None) -> BackendInfo:
        """The info of a backend that cannot run here: ``why``, then how to install it."""
        reason = f"{why}: {self.install_hint}" if self.install_hint else why
        return BackendInfo(self.name, False, version=version, reason=reason)

    def skip_reason(self, case: Case) -> str | None:
        """Why ``case`` cannot run in this backend here, or None when it can."""
        info = self.info()
        if not info.available:
            return info.reason
        if case.device not in info.devices:
            return f"{self.name}: device {case.device!r} not available (have {info.devices})"
        return self.execution_reason(case)

    def execution_reason(self, case: Case) -> str | None:
        """Why this backend has no form for ``case.execution``, or None when it has one."""
        if case.execution in self.executions:
            return None
        runs = ", ".join(f"{k} ({v})" if v != k else k for k, v in self.executions.items())
        return f"{self.name}: no execution {case.execution!r} in this backend (it runs: {runs})"

    def set_threads(self, threads: int | None) -> None:
        """Set the number of CPU threads the framework uses for the following cases."""

    def configure(self, timing: TimingConfig) -> None:
        """Timing options a backend implements itself, set before each group of cases:
        ``autotune`` (cuDNN benchmark and its equivalents), ``cold_cache`` (flushing in
        its device sampler), ``rotate_inputs``. Record in ``details()`` what took effect."""

    def peak_work(self, device: str, dtype: str) -> PeakWork | None:
        """Optional: a large matmul and a large device-to-device copy through the framework,
        timed by the core to measure the device's peaks (:mod:`convbench.peaks`)."""
        return None

    @abstractmethod
    def prepare(self, case: Case, graph: Graph, tensors: Tensors, cotangents: Tensors) -> Prepared:
        """Build ``graph`` for ``case`` with the given float64 data (converted at the boundary)."""


#: Extra backends without installing a plugin: ``name=module:Class,name2=module:Class``.
EXTRA_BACKENDS_ENV = "CONVBENCH_EXTRA_BACKENDS"


@functools.cache
def _entry_points() -> tuple[tuple[str, str], ...]:
    """The installed plugins' (name, ``module:attribute``), read once per process."""
    return tuple((ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP))


def _registry() -> dict[str, str]:
    """Backend name -> ``module:attribute``, from entry points and CONVBENCH_EXTRA_BACKENDS."""
    found = dict(_entry_points())
    for item in filter(None, os.environ.get(EXTRA_BACKENDS_ENV, "").split(",")):
        name, sep, target = item.partition("=")
        if not sep or ":" not in target:
            raise ValueError(f"{EXTRA_BACKENDS_ENV}: expected name=module:Class, got {item!r}")
        found[name.strip()] = target.strip()
    return found


def backend_names() -> list[str]:
    """Names of every registered backend plugin."""
    return sorted(_registry())


def backend_targets() -> dict[str, str]:
    """Each registered backend's ``module:attribute``, by name."""
    return dict(sorted(_registry().items()))


def _import_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def backend_class(name: str) -> type[Backend]:
    """The class registered as ``name``: imports the plugin module (never its framework)
    and does not instantiate it. KeyError when no backend has that name; the plugin's own
    error when it does not import."""
    registry = _registry()
    if name not in registry:
        raise KeyError(f"no backend named {name!r}; registered: {', '.join(sorted(registry))}")
    return _import_target(registry[name])


class InferenceOnlyBackend(Backend):
    """A backend that runs inference graphs only, in the dtypes it lists, and keeps the
    thread count it is given in ``_threads`` for its cases (onnxruntime, litert, tvm).
    Subclasses set ``dtypes``, ``training_reason`` and ``bfloat16_reason``."""

    dtypes: tuple[str, ...] = ("float32",)
    training_reason: str = ""
    bfloat16_reason: str = ""
    _threads: int | None = None

    def set_threads(self, threads: int | None) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be positive, got {threads}")
        self._threads = threads

    def skip_reason(self, case: Case) -> str | None:
        reason = super().skip_reason(case)
        if reason is not None:
            return reason
        if case.mode == "training":
            return self.training_reason
        if case.variant == "kernel":
            return f"{self.name}: no hand-written kernel variant is implemented in this backend"
        if case.dtype == "bfloat16":
            return self.bfloat16_reason
        if case.dtype not in self.dtypes:
            return f"{self.name}: only {', '.join(self.dtypes)} is implemented in this backend (asked {case.dtype})"
        return None

def load_backend(name: str) -> Backend:
    """Instantiate the backend registered as ``name`` (imports the plugin, not its framework)."""
    return backend_class(name)()


@functools.cache
def _declaring(target: str) -> type[Backend] | None:
    """The Backend subclass at ``target``, for its class-level declarations; None when it
    does not import or is no Backend subclass (its worker then says why). Asked once."""
    try:
        cls = _import_target(target)
    except Exception:
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Backend) else None


def declarations() -> dict[str, type[Backend]]:
    """Each registered plugin's class by name, read for what it declares (executions,
    venv, conformance) in any process: loading an entry point imports the plugin module
    only. Plugins that do not load are left out (:func:`unloadable_backends`)."""
    classes = {name: _declaring(target) for name, target in sorted(_registry().items())}
    return {name: cls for name, cls in classes.items() if cls is not None}


def unloadable_backends() -> list[str]:
    """Registered backends whose plugin class does not load here (they declare nothing)."""
    return [name for name, target in sorted(_registry().items()) if _declaring(target) is None]


def backend_venv(name: str) -> str | None:
    """The virtual environment the backend registered as ``name`` declares, or None."""
    target = _registry().get(name)
    cls = _declaring(target) if target is not None else None
    return cls.venv if cls is not None else None


def execution_vocabulary() -> dict[str, str]:
    """Every execution a suite may name, with what it asks for: the generic names
    (:data:`~convbench.cases.GENERIC_EXECUTIONS`) first, then those the registered plugins
    declare (:attr:`Backend.executions`), by backend name; each is described by the
    backends that run it (:attr:`Backend.execution_descriptions`, else the form it runs)."""
    said: dict[str, list[str]] = {name: [] for name in GENERIC_EXECUTIONS}
    for backend, cls in declarations().items():
        for execution, form in cls.executions.items():
            text = cls.execution_descriptions.get(execution)
            if text is None and form != execution:
                text = f"as {form}"
            elif text is None and execution not in GENERIC_EXECUTIONS:
                text = "a form of its own"
            said.setdefault(execution, []).extend([f"{backend}: {text}"] if text else [])
    vocabulary: dict[str, str] = {}
    for execution, parts in said.items():
        generic = GENERIC_EXECUTIONS.get(execution)
        if generic is None:
            vocabulary[execution] = "; ".join(parts)
        else:
            vocabulary[execution] = f"{generic} ({'; '.join(parts)})" if parts else generic
    return vocabulary
