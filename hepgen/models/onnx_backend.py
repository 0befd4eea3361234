"""Exported generators in ONNX Runtime: a hepgen generator without torch.

``hepgen export MODEL_DIR --format onnx -o OUT`` writes, beside a copy of the model directory,
one ONNX graph per generator and network role (``onnx/<stem>.sample.onnx``: base-space draws
``z`` (n, D) and model-space conditions ``c`` (n, C) -> targets ``x`` (n, D); for flows also
``onnx/<stem>.log_prob.onnx``: ``x``, ``c`` -> ``log_prob`` (n,)) and ``export.json``, the
manifest that lists them (README, "Exporting a model").  :class:`OnnxGenerator` answers the
numpy side of the generator protocol of :mod:`hepgen.models.base` over such graphs: ``sample``,
``log_prob`` (flows), ``has_likelihood``, ``n_features_``, ``n_conditions_``, ``kind``.  It
imports no torch at all and onnxruntime only when a graph is opened (the optional extra
``hepgen[onnx]``), so a fast simulation exported once runs where torch is not installed
(``FastSim.load(OUT, backend="onnx")``, ``hepgen generate --backend onnx``).

The graphs are pure functions: the noise is drawn here, with numpy
(``np.random.default_rng(seed)``, standard normal, float32, batch after batch in row order).
The same seed therefore gives the same samples whatever the batch size, but *not* the same
samples as the torch backend (which draws with a seeded ``torch.Generator``): the draws
differ, the distribution does not.  Preprocessing is not in the graphs; it stays the numpy
step of :class:`hepgen.preprocessing.Preprocessor`.

Threads follow hepgen's production rule (:data:`hepgen.devices.PRODUCTION_THREADS`): one
intra-op thread per process by default (parallelism comes from processes: Dask workers, one
thread each), settable per generator (``threads=``) or for a whole run with the environment
variable ``HEPGEN_ONNX_THREADS``; one inter-op thread, sequential execution, every graph
optimisation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from hepgen.devices import PRODUCTION_THREADS, check_device
from hepgen.errors import InputError, MissingDependencyError
from hepgen.models.base import NoLikelihoodError, check_model_inputs
from hepgen.models.latent import LatentOptions, draw_latent_numpy

__all__ = [
    "BACKENDS",
    "DEFAULT_BATCH_SIZE",
    "EXPORT_FILE",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "THREADS_ENV",
    "OnnxGenerator",
    "check_backend",
    "read_export",
]

#: What can run the generators of a loaded model: torch (its weights) or ONNX Runtime (an
#: export folder's graphs).
BACKENDS = ("torch", "onnx")
#: The manifest of an export folder.
EXPORT_FILE = "export.json"
#: ``format`` of ``export.json``.
EXPORT_FORMAT = "hepgen-export"
#: ``format_version`` values of ``export.json`` that this hepgen reads.
EXPORT_FORMAT_VERSION = 1
#: Rows per graph call in :meth:`OnnxGenerator.sample` and :meth:`OnnxGenerator.log_prob`.
DEFAULT_BATCH_SIZE = 8192
#: Environment variable: intra-op threads of every ONNX session opened in this process.
THREADS_ENV = "HEPGEN_ONNX_THREADS"


def check_backend(backend: Any, what: str = "backend") -> str:
    """``backend`` if it is one of :data:`BACKENDS`.

    Raises
    ------
    InputError
        Anything else (``what`` names the option in the message).

    Examples
    --------
    >>> check_backend("onnx")
    'onnx'
    >>> check_backend("tensorrt")
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: backend 'tensorrt': expected 'torch' or 'onnx'
    """
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise InputError(f"{what} {backend!r}: expected 'torch' or 'onnx'")
    return backend


def _onnxruntime() -> Any:
    """The onnxruntime module, or :class:`MissingDependencyError` naming the extra."""
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError(
            "the ONNX backend needs onnxruntime, which is not installed: pip install 'hepgen[onnx]'"
        ) from None
    return onnxruntime


def _threads(threads: int | None) -> int:
    """Intra-op threads: ``threads``, else ``$HEPGEN_ONNX_THREADS``, else one."""
    if threads is None:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return PRODUCTION_THREADS
        try:
            threads = int(text)
        except ValueError:
            raise InputError(
                f"environment variable {THREADS_ENV}={text!r}: expected a positive integer"
            ) from None
        what = f"environment variable {THREADS_ENV}"
    else:
        what = "threads"
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise InputError(f"{what}: expected a positive number of threads, got {threads!r}")
    return int(threads)


def _providers(device: str, ort: Any) -> list[Any]:
    """Execution providers for a hepgen device name (``auto``: CUDA when this onnxruntime
    build has it, else the CPU)."""
    device = check_device(device)
    available = ort.get_available_providers()
    if device == "cpu" or (device == "auto" and "CUDAExecutionProvider" not in available):
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in available:
        raise InputError(
            f"device {device!r}: the installed onnxruntime has no CUDA execution provider "
            f"(it has {', '.join(available)}); install onnxruntime-gpu or use device 'cpu'"
        )
    index = int(device[5:]) if ":" in device else 0
    return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]


def _session(path: Path, threads: int, device: str) -> Any:
    """An inference session of one graph with hepgen's session options."""
    ort = _onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if not path.is_file():
        raise InputError(f"'{path}': ONNX graph not found")
    try:
        return ort.InferenceSession(
            os.fspath(path), sess_options=options, providers=_providers(device, ort)
        )
    except InputError:
        raise
    except Exception as exc:  # onnxruntime raises its own types for damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"'{path}': not a readable ONNX graph ({first})") from None


def read_export(directory: str | os.PathLike, target: str = "onnx") -> dict[str, Any]:
    """The manifest ``export.json`` of an export folder, checked.

    Parameters
    ----------
    directory : path
        An export folder written by ``hepgen export``.
    target : {"onnx", "torchscript"}
        The export target the caller runs.

    Returns
    -------
    dict
        The manifest (``graphs``: stem -> role, kind, widths, graph files).

    Raises
    ------
    InputError
        No ``export.json`` (the message says how to write one), an unreadable or foreign
        file, another ``format_version``, or an export of another target.

    Examples
    --------
    >>> read_export("no/such/dir")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    hepgen.errors.InputError: 'no/such/dir' holds no ONNX export (no export.json): run ...
    """
    directory = Path(directory)
    path = directory / EXPORT_FILE
    how = f"hepgen export {directory} --format {target} -o OUT"
    if not path.is_file():
        raise InputError(
            f"'{directory}' holds no {_target_name(target)} export (no {EXPORT_FILE}): run "
            f"'{how}' and load OUT"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"'{path}': unreadable export manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise InputError(f"'{path}': not a hepgen export manifest (format {EXPORT_FORMAT!r})")
    if manifest.get("format_version") != EXPORT_FORMAT_VERSION:
        raise InputError(
            f"'{path}': export format_version {manifest.get('format_version')!r}; this hepgen "
            f"reads {EXPORT_FORMAT_VERSION}: export again with this hepgen ('{how}')"
        )
    if manifest.get("target") != target:
        raise InputError(
            f"'{path}': an export for {manifest.get('target')!r}, not {target!r}: run '{how}'"
        )
    if not isinstance(manifest.get("graphs"), dict):
        raise InputError(f"'{path}': missing key 'graphs'")
    return manifest


def _target_name(target: str) -> str:
    return {"onnx": "ONNX", "torchscript": "TorchScript"}.get(target, repr(target))


def _graph_path(directory: Path, name: Any, where: str) -> Path:
    """A graph file named in the manifest: a relative path inside ``directory``."""
    parts = PurePosixPath(name).parts if isinstance(name, str) and name else ()
    if not parts or PurePosixPath(name).is_absolute() or ".." in parts:
        raise InputError(f"{where}: expected a relative path inside the folder, got {name!r}")
    return directory.joinpath(*parts)


class OnnxGenerator:
    """A generator exported to ONNX: one draw per condition row, and flow log-densities.

    Parameters
    ----------
    sample_graph : path
        The sampling graph (inputs noise ``z`` (n, N) and conditions ``c`` (n, C), output
        ``x`` (n, D), float32).
    log_prob_graph : path or None
        The density graph of a flow (inputs ``x``, ``c``, output ``log_prob`` (n,)); ``None``
        for generators without a likelihood (GANs).
    kind : str
        The generator kind (``"flow"``, ``"gan"``), as ``model.kind``.
    threads : int or None
        Intra-op threads of each session (default ``$HEPGEN_ONNX_THREADS``, else one).
    device : {"cpu", "auto", "cuda", "cuda:N"}
        ``"cpu"`` (default) runs on the CPU execution provider; CUDA needs an onnxruntime
        build with the CUDA provider (``"auto"`` uses it when present).

    Attributes
    ----------
    n_features_, n_conditions_, n_noise_ : int
        Widths D of the targets, C of the conditions and N of the noise (D for a flow).
    has_likelihood : bool
        Whether :meth:`log_prob` is available (a density graph was given).

    Notes
    -----
    The noise is drawn with ``np.random.default_rng(seed)`` (standard normal, float32) in row
    order, so the samples for a seed do not depend on ``batch_size``; they differ from the
    torch backend's draws for the same seed (the distribution is the same).  Opening a graph
    executes no code.  Pickled, a generator keeps its graph paths and reopens them.

    Examples
    --------
    >>> gen = OnnxGenerator.from_export("OUT", "flow")          # doctest: +SKIP
    >>> x = gen.sample(conditions, seed=1)                       # doctest: +SKIP
    >>> lp = gen.log_prob(x, conditions)                         # doctest: +SKIP
    """

    default_batch_size: int = DEFAULT_BATCH_SIZE

    def __init__(
        self,
        sample_graph: str | os.PathLike,
        log_prob_graph: str | os.PathLike | None = None,
        kind: str = "flow",
        threads: int | None = None,
        device: str = "cpu",
    ) -> None:
        self.sample_graph = Path(sample_graph)
        self.log_prob_graph = None if log_prob_graph is None else Path(log_prob_graph)
        self.kind = kind
        self.threads = _threads(threads)
        self.device = check_device(device)
        self._open()

    def _open(self) -> None:
        self._sample = _session(self.sample_graph, self.threads, self.device)
        self._density = (
            None
            if self.log_prob_graph is None
            else _session(self.log_prob_graph, self.threads, self.device)
        )
        inputs = self._sample.get_inputs()
        if len(inputs) != 2:
            raise InputError(
                f"'{self.sample_graph}': a sampling graph has 2 inputs (z, c), got {len(inputs)}"
            )
        self._sample_inputs = [i.name for i in inputs]
        self.n_noise_ = _width(inputs[0], self.sample_graph, "z")
        self.n_conditions_ = _width(inputs[1], self.sample_graph, "c")
        self.n_features_ = _width(self._sample.get_outputs()[0], self.sample_graph, "x")
        if self._density is not None:
            d_inputs = self._density.get_inputs()
            if len(d_inputs) != 2:
                raise InputError(
                    f"'{self.log_prob_graph}': a density graph has 2 inputs (x, c), got "
                    f"{len(d_inputs)}"
                )
            self._density_inputs = [i.name for i in d_inputs]
            widths = (
                _width(d_inputs[0], self.log_prob_graph, "x"),
                _width(d_inputs[1], self.log_prob_graph, "c"),
            )
            if widths != (self.n_features_, self.n_conditions_):
                raise InputError(
                    f"'{self.log_prob_graph}': inputs of widths {widths}, the sampling graph "
                    f"has ({self.n_features_}, {self.n_conditions_})"
                )

    @classmethod
    def from_export(
        cls,
        directory: str | os.PathLike,
        stem: str,
        manifest: Mapping[str, Any] | None = None,
        threads: int | None = None,
        device: str = "cpu",
    ) -> OnnxGenerator:
        """The generator ``stem`` (``"flow"``, ``"fakes_flow"``, ...) of an export folder.

        Parameters
        ----------
        directory : path
            The export folder (``hepgen export --format onnx``).
        stem : str
            The generator's entry in the manifest's ``graphs``.
        manifest : mapping or None
            The folder's :func:`read_export` (read here when ``None``).
        threads, device
            As the constructor.

        Raises
        ------
        InputError
            No ONNX export in ``directory``, no graph ``stem`` in it, graph files missing or
            damaged, or widths other than the manifest's.
        """
        directory = Path(directory)
        manifest = read_export(directory) if manifest is None else manifest
        where = f"'{directory / EXPORT_FILE}'"
        entry = manifest["graphs"].get(stem)
        if not isinstance(entry, dict):
            known = ", ".join(sorted(manifest["graphs"])) or "none"
            raise InputError(f"{where}: no graph {stem!r} (it has {known})")
        log_prob = entry.get("log_prob")
        gen = cls(
            _graph_path(directory, entry.get("sample"), f"{where}, graphs.{stem}.sample"),
            None
            if log_prob is None
            else _graph_path(directory, log_prob, f"{where}, graphs.{stem}.log_prob"),
            kind=str(entry.get("kind", "flow")),
            threads=threads,
            device=device,
        )
        widths = {
            "n_features": gen.n_features_,
            "n_conditions": gen.n_conditions_,
            "n_latent": gen.n_noise_,
        }
        for key, value in widths.items():
            if entry.get(key) is not None and entry[key] != value:
                raise InputError(
                    f"{where}: graphs.{stem}.{key} is {entry[key]}, its graph has {value}"
                )
        return gen

    # ------------------------------------------------------------------ protocol
    @property
    def has_likelihood(self) -> bool:
        """Whether :meth:`log_prob` is available (flows: a density graph)."""
        return self._density is not None

    def sample(
        self,
        conditions: np.ndarray,
        seed: int | None = None,
        batch_size: int | None = None,
        *,
        temperature: float | None = None,
        truncation: float | None = None,
    ) -> np.ndarray:
        """One draw per row of ``conditions`` (n, C): targets (n, D), float32, model space.

        Parameters
        ----------
        conditions : array of shape (n, C)
            Model-space conditions.
        seed : int or None
            Seed of the numpy noise (``None``: fresh entropy).
        batch_size : int or None
            Rows per graph call (default :data:`DEFAULT_BATCH_SIZE`); the samples do not
            depend on it.
        temperature, truncation : float or None
            How the noise is drawn (:class:`~hepgen.models.latent.LatentOptions`; default:
            as trained).

        Raises
        ------
        InputError
            Wrong shape or width, or NaN/inf conditions.
        """
        latent = LatentOptions.of(temperature, truncation)
        c, _ = check_model_inputs(
            conditions, n_conditions=self.n_conditions_, where=f"{self.kind} sample (onnx)"
        )
        batch = _batch(batch_size, self.default_batch_size)
        rng = np.random.default_rng(seed)
        z_name, c_name = self._sample_inputs
        out = np.empty((c.shape[0], self.n_features_), dtype=np.float32)
        for start in range(0, c.shape[0], batch):
            cb = c[start : start + batch]
            z = draw_latent_numpy(rng, (cb.shape[0], self.n_noise_), latent)
            out[start : start + cb.shape[0]] = self._sample.run(None, {z_name: z, c_name: cb})[0]
        return out

    def log_prob(
        self, targets: np.ndarray, conditions: np.ndarray, batch_size: int | None = None
    ) -> np.ndarray:
        """log p(targets | conditions) in model space, shape (n,), float64 (nats).

        The graph computes in float32; the result is widened to float64 like the torch
        backend's :meth:`~hepgen.models.flow_model.FlowModel.log_prob`.

        Raises
        ------
        NoLikelihoodError
            A generator without a density graph (GAN).
        InputError
            Wrong shapes or widths, or NaN/inf values.
        """
        if self._density is None:
            raise NoLikelihoodError(
                f"a '{self.kind}' model has no tractable likelihood: log_prob needs a flow "
                "(model.kind: flow) exported with its density graph"
            )
        c, x = check_model_inputs(
            conditions,
            targets,
            self.n_conditions_,
            self.n_features_,
            where=f"{self.kind} log_prob (onnx)",
        )
        assert x is not None
        batch = _batch(batch_size, self.default_batch_size)
        x_name, c_name = self._density_inputs
        out = np.empty(c.shape[0], dtype=np.float64)
        for start in range(0, c.shape[0], batch):
            feed = {x_name: x[start : start + batch], c_name: c[start : start + batch]}
            out[start : start + batch] = self._density.run(None, feed)[0].reshape(-1)
        return out

    def describe(self) -> dict[str, Any]:
        """Summary for model cards and messages: backend, kind, widths, graphs, threads."""
        return {
            "backend": "onnx",
            "kind": self.kind,
            "n_features": self.n_features_,
            "n_conditions": self.n_conditions_,
            "n_noise": self.n_noise_,
            "sample_graph": os.fspath(self.sample_graph),
            "log_prob_graph": None
            if self.log_prob_graph is None
            else os.fspath(self.log_prob_graph),
            "threads": self.threads,
            "providers": list(self._sample.get_providers()),
        }

    def save(self, directory: str | os.PathLike, name: str | None = None) -> list[Path]:
        """Not available: an exported generator is read-only (copy the export folder)."""
        raise InputError(
            "an ONNX-backed generator cannot be saved: copy the export folder, or save the "
            "model loaded with backend 'torch'"
        )

    def __repr__(self) -> str:
        return (
            f"OnnxGenerator(kind={self.kind!r}, n_features={self.n_features_}, "
            f"n_conditions={self.n_conditions_}, graph='{self.sample_graph}')"
        )

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._open()


def _width(arg: Any, path: Path | None, name: str) -> int:
    """The static second dimension of a graph input or output."""
    shape = list(arg.shape)
    if len(shape) != 2 or not isinstance(shape[1], int):
        raise InputError(
            f"'{path}': {name} ({arg.name}) must have shape (n, width) with a fixed width, "
            f"got {shape}"
        )
    return int(shape[1])


def _batch(batch_size: int | None, default: int) -> int:
    if batch_size is None:
        return default
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}")
    return int(batch_size)
