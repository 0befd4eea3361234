"""``export_model``: a model directory to an export folder, written only when parity holds.

The export folder (``docs/export.md``) is the model directory copied file for file, one graph
file per generator and role under ``onnx/`` or ``torchscript/``, and ``export.json``, written
last.  The folder is built beside its final path and renamed into place whole
(:func:`hepgen.utils.atomic_directory`) only after every graph has passed its parity check
(:mod:`hepgen.export.parity`); a failed check, an error or an interrupt leaves nothing at the
output path (or the previous folder, with ``overwrite``).  The model directory is only read.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hepgen._version import __version__
from hepgen.errors import InputError

# the folder's contract is the reader's (the ONNX backend): one definition of it
from hepgen.models.onnx_backend import EXPORT_FILE, EXPORT_FORMAT, EXPORT_FORMAT_VERSION
from hepgen.models.parity import ParityReport

__all__ = [
    "EXPORT_FILE",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "TARGETS",
    "ExportResult",
    "export_model",
]

#: Export targets: the graphs' folder and file suffix.
TARGETS = {"onnx": ("onnx", ".onnx"), "torchscript": ("torchscript", ".pt")}
#: Input and output names of the two graph roles.
NAMES = {"sample": ("z", "c", "x"), "log_prob": ("x", "c", "log_prob")}
#: Rows of the example inputs a graph is traced with (any other count runs too).
TRACE_ROWS = 8


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_model` wrote.

    Attributes
    ----------
    path : Path
        The export folder.
    manifest : dict
        The content of its ``export.json``.
    reports : list of ParityReport
        Every graph's parity check (all passed).
    """

    path: Path
    manifest: dict[str, Any]
    reports: list[ParityReport]

    def summary_lines(self) -> list[str]:
        """The parity lines, then the folder."""
        graphs = len(self.reports)
        return [r.summary() for r in self.reports] + [
            f"exported {graphs} graphs ({self.manifest['target']}, "
            f"{self.manifest['precision']}) to {self.path}"
        ]


def _check_paths(model_dir: Path, output: Path, overwrite: bool) -> None:
    if not model_dir.exists():
        raise InputError(f"model directory '{model_dir}' does not exist")
    if not model_dir.is_dir():
        raise InputError(
            f"'{model_dir}' is a file; expected a model directory (holding hepgen-model.json)"
        )
    if not os.fspath(output):
        raise InputError("-o/--output is empty; expected the export folder to write")
    if output.exists() or output.is_symlink():
        if not output.is_dir():
            raise InputError(f"output folder '{output}' is an existing file, expected a folder")
        if not overwrite:
            raise InputError(
                f"output folder '{output}' already exists; use --overwrite to replace it, "
                "or choose another path"
            )
    source, target = model_dir.resolve(), output.resolve()
    if source == target or source in target.parents or target in source.parents:
        raise InputError(
            f"output folder '{output}' is, holds or lies inside the model directory "
            f"'{model_dir}'; the export never writes into its input: choose another folder"
        )


def _check_options(target: str, precision: str, tolerance: float | None) -> dict[str, float]:
    from hepgen.export.parity import tolerances

    if target not in TARGETS:
        raise InputError(f"--format must be one of {', '.join(TARGETS)}, got {target!r}")
    if precision not in ("float32", "bfloat16"):
        raise InputError(f"--precision must be float32 or bfloat16, got {precision!r}")
    return tolerances(precision, tolerance)


def export_model(
    model_dir: str | os.PathLike,
    output: str | os.PathLike,
    target: str = "onnx",
    precision: str = "float32",
    tolerance: float | None = None,
    overwrite: bool = False,
    *,
    exporter: str = "auto",
    n_rows: int = 4096,
    seed: int = 0,
    on_report: Callable[[ParityReport], None] | None = None,
) -> ExportResult:
    """Export every generator of a model directory, checked against the Python model.

    Parameters
    ----------
    model_dir : path
        A fast simulation (``hepgen train``) or a density model; only read.
    output : path
        The export folder to write (refused if it exists, unless ``overwrite``).
    target : {"onnx", "torchscript"}
    precision : {"float32", "bfloat16"}
        Of the flows' conditioner matrix products (the splines are always float32).
    tolerance : float or None
        Largest absolute difference of the samples (log_prob: ten times it, in nats);
        default 1e-4 in float32, 0.05 in bfloat16 (:func:`hepgen.export.parity.tolerances`).
    overwrite : bool
        Replace an existing ``output`` (only once the new export has passed).
    exporter : {"auto", "dynamo", "legacy"}
        ONNX exporter: dynamo with the legacy one as fallback (recorded), or one of them.
    n_rows : int
        Rows of each parity check.
    seed : int
        Seeds the parity inputs.
    on_report : callable or None
        Called with each :class:`~hepgen.models.parity.ParityReport` as it is computed.

    Returns
    -------
    ExportResult

    Raises
    ------
    InputError
        A missing model directory (or not one), an existing output without ``overwrite``,
        an output inside the model directory (or holding it), a bad option, bfloat16 ONNX
        where ONNX Runtime has no bfloat16 kernels.
    MissingDependencyError
        ``target="onnx"`` without onnx / onnxruntime (the extra ``hepgen[onnx]``).
    ParityFailed
        A graph differs from the model by more than the tolerance; nothing is written.

    Examples
    --------
    >>> result = export_model("model", "model_onnx")           # doctest: +SKIP
    >>> print("\\n".join(result.summary_lines()))               # doctest: +SKIP
    """
    model_dir, output = Path(model_dir), Path(output)
    tol = _check_options(target, precision, tolerance)
    _check_paths(model_dir, output, overwrite)
    if target == "onnx":
        from hepgen.export.onnx import EXPORTERS, check_bfloat16_runs, require_onnx

        if exporter not in EXPORTERS:
            raise InputError(f"exporter must be one of {', '.join(EXPORTERS)}, got {exporter!r}")
        require_onnx()
        if precision == "bfloat16":
            check_bfloat16_runs()
    import torch  # noqa: F401  (loaded before torch_threads, which sets its threads)

    from hepgen.devices import torch_threads

    # one torch thread, as every production's model calls (hepgen.devices): 2-5x faster than
    # several on a shared machine, and the parity numbers the same wherever they are computed
    with torch_threads():
        return _export(model_dir, output, target, precision, tol, exporter, n_rows, seed, on_report)


def _export(
    model_dir: Path,
    output: Path,
    target: str,
    precision: str,
    tol: dict[str, float],
    exporter: str,
    n_rows: int,
    seed: int,
    on_report: Callable[[ParityReport], None] | None,
) -> ExportResult:
    """:func:`export_model` after its checks."""
    from hepgen.export.graphs import load_graphs, model_files
    from hepgen.modeldir import model_hash
    from hepgen.utils import atomic_directory, write_json

    graphs = load_graphs(model_dir, precision)
    digest = model_hash(model_dir)
    with atomic_directory(output) as tmp:
        for path in model_files(model_dir):
            shutil.copy2(path, tmp / path.name)
        entries, reports = _write_graphs(
            graphs, tmp, target, exporter, tol, n_rows, seed, on_report
        )
        failed = [r for r in reports if not r.passed]
        if failed:
            from hepgen.export.parity import ParityFailed

            lines = "; ".join(r.summary() for r in failed)
            raise ParityFailed(f"export refused, nothing written to '{output}': {lines}")
        manifest = _manifest(target, precision, digest, entries, reports, tol, n_rows, seed)
        write_json(tmp / EXPORT_FILE, manifest)
    return ExportResult(path=output, manifest=manifest, reports=reports)


def _write_graphs(
    graphs: list[Any],
    folder: Path,
    target: str,
    exporter: str,
    tol: dict[str, float],
    n_rows: int,
    seed: int,
    on_report: Callable[[ParityReport], None] | None,
) -> tuple[dict[str, Any], list[ParityReport]]:
    """Write, check and run every graph; the manifest entries and the parity reports."""
    import numpy as np
    import torch

    from hepgen.export.parity import check_graph

    sub, suffix = TARGETS[target]
    (folder / sub).mkdir()
    entries: dict[str, Any] = {}
    reports: list[ParityReport] = []
    for g in graphs:
        rng = np.random.default_rng(seed)
        z = torch.from_numpy(rng.standard_normal((TRACE_ROWS, g.n_latent)).astype(np.float32))
        c = torch.from_numpy(g.conditions[:TRACE_ROWS].copy())
        with torch.no_grad():
            x = g.sample(z, c)
        entry = g.entry(sub, suffix)
        runners: dict[str, Any] = {}
        used: dict[str, str] = {}
        notes: list[str] = []
        for role, module, example in (
            ("sample", g.sample, (z, c)),
            ("log_prob", g.log_prob, (x, c)),
        ):
            if module is None:
                continue
            path = folder / entry[role]
            how, note = _write_one(target, module, example, path, NAMES[role], exporter)
            used[role] = how
            if note:
                notes.append(f"{role}: {note}")
            runners[role] = _runner(target, path, g.precision)
        entry["exporter"] = used
        if notes:
            entry["exporter_notes"] = notes
        entries[g.stem] = entry
        for report in check_graph(g, runners["sample"], runners.get("log_prob"), tol, n_rows, seed):
            reports.append(report)
            if on_report is not None:
                on_report(report)
    return entries, reports


def _write_one(
    target: str,
    module: Any,
    example: tuple[Any, ...],
    path: Path,
    names: tuple[str, ...],
    exporter: str,
) -> tuple[str, str | None]:
    if target == "onnx":
        from hepgen.export.onnx import check_onnx, write_onnx

        how, note = write_onnx(module, example, path, names, exporter)
        check_onnx(path, names)
        return how, note
    from hepgen.export.torchscript import write_torchscript

    write_torchscript(module, example, path)
    return "torch.jit.trace", None


def _runner(target: str, path: Path, precision: str) -> Callable[[Any, Any], Any]:
    if target == "onnx":
        from hepgen.export.onnx import onnx_runner

        return onnx_runner(path, precision)
    from hepgen.export.torchscript import torchscript_runner

    return torchscript_runner(path)


def _manifest(
    target: str,
    precision: str,
    digest: str,
    entries: dict[str, Any],
    reports: list[ParityReport],
    tol: dict[str, float],
    n_rows: int,
    seed: int,
) -> dict[str, Any]:
    """The content of export.json (``docs/export.md``)."""
    import torch

    from hepgen.export.onnx import OPSET

    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_FORMAT_VERSION,
        "target": target,
        "opset": OPSET if target == "onnx" else None,
        "precision": precision,
        "hepgen_version": __version__,
        "torch_version": torch.__version__,
        "model_hash": digest,
        "graphs": entries,
        "parity": {r.what: r.to_dict() for r in reports},
        "parity_settings": {
            "rows": n_rows,
            "seed": seed,
            "tolerance": tol,
            "reference": "eager Python model (ConditionalFlow.from_latent / .log_prob at the "
            "reference samples; ConditionalGAN.generate)",
        },
    }
