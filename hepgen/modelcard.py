"""The human-readable model card of a model directory (``hepgen info``).

:func:`format_card` turns the content of ``hepgen-model.json`` (:mod:`hepgen.modeldir`) into
plain text: what the model maps to what, its architecture, the training summary, the validity
domain of the conditions, provenance and notes, for every kind of model (a fast simulation
with a flow or a GAN, a density model), so that a model can be judged without loading it.

Examples
--------
>>> card = {"format": "hepgen-model", "format_version": 2, "kind": "density",
...         "features": [{"name": "mj1", "kind": "positive"}],
...         "conditions": [{"name": "mjj", "kind": "positive"}],
...         "data_summary": {"n_train": 800, "n_validation": 200}}
>>> for line in format_card(card).splitlines()[:4]:
...     print(line)
hepgen model card (format hepgen-model v2)
  kind: density  |  p(features | conditions), 800 training / 200 validation events
  features:   mj1 (positive)
  conditions: mjj (positive)
"""

from __future__ import annotations

from typing import Any

__all__ = ["format_card"]


def _range(d: dict[str, Any]) -> str:
    if "categories" in d:
        return "categories " + ", ".join(str(c) for c in d["categories"])
    lo, hi = d.get("min"), d.get("max")
    text = f"[{lo:.5g}, {hi:.5g}]" if lo is not None and hi is not None else "?"
    if d.get("sentinels"):
        text += f" + sentinels {d['sentinels']}"
    return text


def _format_density(card: dict[str, Any]) -> list[str]:
    """The lines of a density model's card (:class:`hepgen.anomaly.density.DensityModel`)."""

    def names(key: str) -> str:
        return ", ".join(f"{f['name']} ({f.get('kind')})" for f in card.get(key) or [])

    arch = card.get("architecture") or {}
    s = card.get("flow") or arch.get("settings") or {}
    data = card.get("data_summary") or {}
    lines = [
        f"  kind: density  |  p(features | conditions), {data.get('n_train')} training / "
        f"{data.get('n_validation')} validation events",
        "  features:   " + names("features"),
        "  conditions: " + names("conditions"),
        *_flow_lines(s, arch),
    ]
    trend = card.get("trend")
    if trend or card.get("conditional") is False:
        lines.append(
            f"  trend: degree {trend['degree'] if trend else 0} polynomial in the "
            "conditions; the flow "
            + (
                "sees the conditions"
                if card.get("conditional", True)
                else "models the residuals without the conditions"
            )
        )
    for name, d in (card.get("domain") or {}).items():
        gap = d.get("largest_gap")
        if gap:
            lines.append(
                f"  largest interval of {name} without training events: "
                f"[{gap[0]:.5g}, {gap[1]:.5g}]"
            )
    return lines


def _flow_lines(s: dict[str, Any], arch: dict[str, Any]) -> list[str]:
    """The flow's architecture line, by family, and its cost class (``architecture.cost``,
    absent from the cards of hepgen before the flow families)."""
    kind = s.get("kind")
    net = f"{s.get('hidden_features')} hidden x {s.get('n_blocks')} blocks"
    levels = f", {s['levels']} levels" if (s.get("levels") or 1) > 1 else ""
    if kind in ("coupling", "autoregressive", None):
        what = (
            f"{kind} RQ-spline, {s.get('n_transforms')} transforms, {net}, {s.get('n_bins')} "
            f"bins, tail bound {s.get('tail_bound')}, mixing {s.get('mixing')}{levels}"
        )
    elif kind == "residual":
        what = (
            f"residual, {s.get('n_transforms')} blocks, {net}, Lipschitz bound "
            f"{s.get('lipschitz')}, fixed-point inverse to {s.get('inverse_tolerance')} in at "
            f"most {s.get('inverse_max_iterations')} iterations"
        )
    elif kind == "flow-matching":
        solver = (
            f"dopri5 at tolerance {s.get('ode_tolerance')}"
            if s.get("sampler") == "dopri5"
            else f"{s.get('sampler')} x {s.get('n_steps')} steps"
        )
        what = f"flow-matching, velocity field {net}, sampler {solver}"
    else:
        mixing = "" if kind == "glow" else f", mixing {s.get('mixing')}"
        what = f"{kind}, {s.get('n_transforms')} transforms, {net}{mixing}{levels}"
    lines = [f"  flow: {what}; {arch.get('n_parameters')} parameters"]
    cost = arch.get("cost")
    if cost:
        lines.append(f"  cost: sampling {cost.get('sample')}; density {cost.get('log_prob')}")
    return lines


def _vae_lines(s: dict[str, Any], arch: dict[str, Any]) -> list[str]:
    """The VAE's architecture line, its active latent dimensions and its likelihood."""
    active = arch.get("active_dimensions")
    active_text = "" if active is None else f", {active} of {s.get('latent_dim')} active"
    lines = [
        f"  vae: latent {s.get('latent_dim')}{active_text}, {s.get('hidden_features')} hidden "
        f"x {s.get('n_blocks')} blocks, beta {s.get('beta')}, free bits {s.get('free_bits')}; "
        f"{arch.get('n_parameters')} parameters",
        "  likelihood: none exact; ELBO and IWAE lower bounds (hepgen score --bound)",
    ]
    return lines


def format_card(card: dict[str, Any]) -> str:
    """Format the content of ``hepgen-model.json`` as a plain-text model card."""
    if card.get("kind") == "density":
        lines = [
            f"hepgen model card (format {card.get('format')} v{card.get('format_version')})",
            *_format_density(card),
        ]
        return "\n".join(lines + _training_lines(card) + _tail_lines(card))
    cfg = card.get("config", {})
    data = cfg.get("data", {})
    features = cfg.get("features", [])
    layout = data.get("layout", "collections")
    if layout == "collections":
        what = (
            f"{data.get('gen')} -> {data.get('reco')}, tree '{data.get('tree')}', matching "
            f"{data.get('matching', {}).get('method')}"
        )
    else:
        objects = f" {', '.join(data.get('objects') or [])}" if layout == "objects" else ""
        flag = data.get("reconstructed")
        what = f"layout {layout}{objects}, tree '{data.get('tree')}', " + (
            f"reconstruction flag '{flag}'" if flag else "no reconstruction flag"
        )
    lines = [
        f"hepgen model card (format {card.get('format')} v{card.get('format_version')})",
        f"  kind: {card.get('kind')}  |  {what}",
    ]
    cond = [f["name"] for f in features if f.get("role") == "condition"]
    targ = [
        f["name"] + (f" (relative to {f['relative_to']})" if f.get("relative_to") else "")
        for f in features
        if f.get("role") == "target"
    ]
    lines.append("  conditions: " + ", ".join(cond))
    lines.append("  targets:    " + ", ".join(targ))
    arch = card.get("architecture") or {}
    settings = arch.get("settings", {})
    if card.get("kind") == "gan":
        shown = ", ".join(f"{k} {v}" for k, v in settings.items())
        lines.append(f"  gan: {shown}; {arch.get('n_parameters')} parameters")
    elif card.get("kind") == "vae":
        lines.extend(_vae_lines(settings, arch))
    else:
        lines.extend(_flow_lines(settings, arch))
    sampling = ((card.get("config") or {}).get("model") or {}).get("sampling") or {}
    if sampling.get("temperature", 1.0) != 1.0 or sampling.get("truncation") is not None:
        psi = sampling.get("truncation")
        lines.append(
            f"  sampling: temperature {sampling.get('temperature', 1.0):g}, truncation "
            f"{'none' if psi is None else f'{psi:g}'} (model.sampling: the default of "
            "generate; the samples trade diversity for fidelity)"
        )
    eff = card.get("efficiency") or {}
    if eff:
        es = eff.get("summary") or {}
        if eff.get("constant") is not None:
            lines.append(f"  efficiency: constant {eff['constant']}")
        else:
            lines.append(
                f"  efficiency: {eff.get('kind')} classifier, {es.get('n_trees')} trees, "
                f"validation log-loss {es.get('validation_logloss', float('nan')):.4f}, "
                f"mean efficiency {es.get('efficiency', float('nan')):.4f}"
            )
    fakes = card.get("fakes")
    lines.append(
        "  fakes: "
        + (
            f"per-event multiplicity table + {card.get('kind')} of their features"
            if fakes
            else "not modelled"
        )
    )
    lines += _training_lines(card)
    summary = card.get("data_summary") or {}
    if summary:
        lines.append(
            f"  data: {summary.get('n_events')} events, {summary.get('n_gen')} gen objects, "
            f"efficiency {summary.get('efficiency', 0):.4f}, fake fraction "
            f"{summary.get('fake_fraction', 0):.4f}; {summary.get('n_train_pairs')} training / "
            f"{summary.get('n_validation_pairs')} validation pairs"
        )
    return "\n".join(lines + _tail_lines(card))


def _training_lines(card: dict[str, Any]) -> list[str]:
    """The training summary line (any kind of model)."""
    lines = []
    tr = card.get("training") or {}
    hist = tr.get("history") or []
    if hist:
        last = hist[-1]
        sel = tr.get("selected_epoch")
        chosen = next((h for h in hist if h.get("epoch") == sel), last)
        lines.append(
            f"  training: {len(hist)} epochs ({tr.get('stopped')}), kept epoch {sel} by "
            f"{tr.get('selection')}: validation loss {chosen.get('val_loss')}, metric "
            f"{chosen.get('metric')}; best-loss epoch {tr.get('best_loss_epoch')}, "
            f"best-metric epoch {tr.get('best_metric_epoch')}"
        )
    return lines


def _tail_lines(card: dict[str, Any]) -> list[str]:
    """Validity domain, provenance and notes (any kind of model)."""
    lines = []
    domain = card.get("domain") or {}
    if domain:
        lines.append("  validity domain of the conditions:")
        lines.extend(f"    {name}: {_range(d)}" for name, d in domain.items())
    prov = card.get("provenance") or {}
    if prov:
        lines.append(
            f"  created {prov.get('created')}, seed {prov.get('seed')}, config {prov.get('config')}"
        )
        for rec in prov.get("inputs", []):
            lines.append(
                f"    input {rec.get('path')} sha256 {str(rec.get('sha256'))[:16]}... "
                f"({rec.get('bytes')} bytes)"
            )
        versions = prov.get("versions", {})
        lines.append("    versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    lines.extend(_inference_lines(card.get("inference")))
    for note in card.get("notes") or []:
        lines.append(f"  note: {note}")
    return lines


def _inference_lines(inference: dict[str, Any] | None) -> list[str]:
    """The generation precision and its checks after training (``inference`` entry)."""
    if not inference:
        return []
    lines = [f"  generation precision (model.precision): {inference.get('precision')}"]
    for precision, check in (inference.get("checks") or {}).items():
        parity = check.get("parity", {})
        low, high = check.get("auc_interval", [float("nan")] * 2)
        verdict = "accepted" if check.get("accepted") else "refused (float32 is used)"
        lines.append(
            f"    {precision} check: {verdict}; samples max |diff| {parity.get('max_abs', 0):.2g}"
            f" (99th percentile {parity.get('p99_abs', 0):.2g}, tolerance "
            f"{parity.get('tolerance', 0):.2g}); classifier AUC {check.get('auc', 0):.3f}, "
            f"float32 {check.get('auc_float32', 0):.3f} [{low:.3f}, {high:.3f}]"
        )
    return lines
