"""Self-contained HTML for a validation report (plots embedded as base64, no external assets).

Colours compare each number with the reference-vs-reference baseline:

* tests with a p-value: **green** when p >= 0.01; **amber** when p < 0.01 but the effect
  (KS statistic, |AUC - 0.5|, MMD) is at most twice the baseline's (significant, yet as small as
  the differences between two halves of the reference); **red** otherwise;
* distances without a p-value (W1, separation power): ratio to the baseline, green <= 2,
  amber <= 5, red above; FPD/KPD: green when within 3 combined errors of the baseline;
* a feature with NaN or infinite values is red in the per-feature table whatever its tests
  say (the tests saw only its finite values).

The page opens with the verdict (PASS / DIFFERENT / INCONCLUSIVE and why), in red the
non-finite values of each sample, and the deciding numbers beside their baselines
(:mod:`hepgen.validation.report.sections`); then the details, the sections of the generative
metrics (PRD, NDB, memorisation, IS analogue, held-out likelihood), the plots (axis labels
with units, :mod:`hepgen.validation.report.units`); it ends with the verdict line again.
Wide tables scroll inside their own box: the page never scrolls sideways at 1400 px.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hepgen._version import __version__
from hepgen.validation.report._base import (
    BAD,
    CSS,
    NONE,
    OK,
    _get,
    _img,
    _num,
    _td,
    breakable,
    scroll,
    status,
)
from hepgen.validation.report.sections import (
    glance_html,
    metric_sections_html,
    multiple_testing_lookup,
)
from hepgen.validation.report.units import unit_of

__all__ = ["render_html", "status"]

#: ``c2st.classifier`` of metrics.json -> the name shown in the report.
_CLASSIFIER_NAMES = {"xgboost": "xgboost", "sklearn-hgb": "scikit-learn HistGradientBoosting"}


def _multivariate_rows(m: dict[str, Any]) -> list[str]:
    b = m.get("baseline") or {}
    rows = []
    c = m.get("c2st")
    if c:
        bc = b.get("c2st") or {}
        effect = abs(c["auc"] - 0.5) if c.get("auc") is not None else None
        beffect = abs(bc["auc"] - 0.5) if bc.get("auc") is not None else None
        ci = c.get("auc_ci") or [None, None]
        rows.append(
            f"<tr><td class='name'>classifier test ({_CLASSIFIER_NAMES.get(c.get('classifier'), 'xgboost')}) ROC AUC</td>"
            + _td(c.get("auc"), status(effect, beffect, c.get("pvalue")))
            + f"<td>[{_num(ci[0])}, {_num(ci[1])}]</td>"
            + _td(c.get("pvalue"))
            + _td(bc.get("auc"))
            + f"<td class='small'>train {c.get('n_train')}, test {c.get('n_test')}</td></tr>"
        )
    mm = m.get("mmd")
    if mm:
        bm = b.get("mmd") or {}
        rows.append(
            "<tr><td class='name'>MMD&sup2; ("
            + html.escape(str(mm.get("kernel")))
            + ")</td>"
            + _td(mm.get("value"), status(mm.get("value"), bm.get("value"), mm.get("pvalue")))
            + "<td>&ndash;</td>"
            + _td(mm.get("pvalue"))
            + _td(bm.get("value"))
            + f"<td class='small'>{html.escape(str(mm.get('method')))}</td></tr>"
        )
    for key, label in (
        ("fpd", "FPD (Frechet physics distance)"),
        ("kpd", "KPD (kernel physics distance)"),
    ):
        d = m.get(key)
        if d:
            bd = b.get(key) or {}
            cls = status(
                d.get("value"),
                bd.get("value"),
                kind="error",
                error=d.get("error"),
                baseline_error=bd.get("error"),
            )
            rows.append(
                f"<tr><td class='name'>{label}</td>"
                + _td(d.get("value"), cls)
                + f"<td>&plusmn; {_num(d.get('error'))}</td><td>&ndash;</td>"
                + _td(bd.get("value"))
                + f"<td class='small'>{html.escape(str(d.get('note') or ''))}</td></tr>"
            )
    p = m.get("prdc")
    if p:
        bp = b.get("prdc") or {}
        for key in ("precision", "recall", "density", "coverage"):
            rows.append(
                f"<tr><td class='name'>{key} (k={p.get('k')})</td>"
                + _td(p.get(key), status(p.get(key), bp.get(key), kind="difference"))
                + "<td>&ndash;</td><td>&ndash;</td>"
                + _td(bp.get(key))
                + "<td class='small'>PRDC</td></tr>"
            )
    return rows


def _nonfinite_cell(entry: dict[str, Any] | None) -> str:
    if not entry:
        return "<td>0 / 0</td>"
    counts = []
    for label in ("reference", "candidate"):
        e = entry.get(label) or {}
        counts.append(sum(int(e.get(k) or 0) for k in ("nan", "posinf", "neginf")))
    return f"<td class='{BAD}'>{counts[0]} / {counts[1]}</td>"


def _verdict_line(m: dict[str, Any]) -> str:
    v = m.get("verdict") or {}
    word = html.escape(str(v.get("verdict", "INCONCLUSIVE")))
    why = "; ".join(str(r) for r in v.get("reasons") or [])
    failure = v.get("failure")
    fail = f"<br><b>FAILED</b>: {html.escape(str(failure))}" if failure else ""
    return (
        f"<p class='verdict v-{word}' id='verdict'>Verdict: <b>{word}</b> &mdash; "
        f"{html.escape(why)}{fail}</p>"
    )


def _nonfinite_html(m: dict[str, Any]) -> str:
    nf = m.get("nonfinite") or {}
    feats = nf.get("features") or {}
    if not feats:
        return ""
    allowed = nf.get("allowed")
    rows = []
    for name, entry in feats.items():
        cells = ""
        for label in ("reference", "candidate"):
            e = entry.get(label) or {}
            for k in ("nan", "posinf", "neginf"):
                cells += _td(e.get(k), BAD if e.get(k) else NONE)
            cells += _td(e.get("n"))
        rows.append(f"<tr><td class='name'>{html.escape(name)}</td>{cells}</tr>")
    policy = (
        "allowed (--allow-nonfinite): the tests used only the finite values"
        if allowed
        else "<b>not allowed: the comparison fails</b> (the tests below used "
        "only the finite values; pass --allow-nonfinite to accept them)"
    )
    return (
        "<div class='alarm'><h2>Non-finite values</h2><p>" + policy + "</p><table><tr>"
        "<th class='name'>feature</th><th>ref NaN</th><th>ref +inf</th><th>ref -inf</th>"
        "<th>ref values</th><th>cand NaN</th><th>cand +inf</th><th>cand -inf</th>"
        "<th>cand values</th></tr>" + "".join(rows) + "</table></div>"
    )


def _adjusted(adj: dict[tuple[str, str], tuple[Any, Any]], name: str, test: str) -> str:
    """Holm / BH adjusted p-values of one test, as one cell (empty without correction)."""
    if not adj:
        return ""
    holm, bh = adj.get((name, test), (None, None))
    cls = NONE if holm is None else (OK if holm >= 0.05 else BAD)
    cls_attr = f" class='{cls}'" if cls != NONE else ""
    return f"<td{cls_attr}>{_num(holm, '.3g')} / {_num(bh, '.3g')}</td>"


def _feature_rows(m: dict[str, Any], units: Mapping[str, str] | None = None) -> list[str]:
    base = _get(m, "baseline", "features") or {}
    nonfinite = _get(m, "nonfinite", "features") or {}
    adj = multiple_testing_lookup(m)
    rows = []
    for name, f in m["features"].items():
        bf = base.get(name) or {}
        ks, chi2 = f.get("ks") or {}, f.get("chi2") or {}
        bks, bchi2 = bf.get("ks") or {}, bf.get("chi2") or {}
        ndf = chi2.get("ndf")
        chi_ndf = chi2["statistic"] / ndf if ndf else None
        bndf = bchi2.get("ndf")
        bchi_ndf = bchi2["statistic"] / bndf if bndf else None
        bad = name in nonfinite
        rows.append(
            f"<tr><td class='name{' bad' if bad else ''}'>{html.escape(name)}</td>"
            + f"<td class='name'>{html.escape(unit_of(name, units))}</td>"
            + _nonfinite_cell(nonfinite.get(name))
            + _td(
                ks.get("statistic"),
                BAD if bad else status(ks.get("statistic"), bks.get("statistic"), ks.get("pvalue")),
            )
            + _td(ks.get("pvalue"))
            + _adjusted(adj, name, "ks")
            + _td(bks.get("statistic"))
            + _td(chi_ndf, status(chi_ndf, bchi_ndf, chi2.get("pvalue")), ".3f")
            + f"<td>{_num(ndf)}</td>"
            + _td(chi2.get("pvalue"))
            + _adjusted(adj, name, "chi2")
            + _td(bchi_ndf, fmt=".3f")
            + _td(f.get("w1"), status(f.get("w1"), bf.get("w1"), kind="ratio"))
            + _td(bf.get("w1"))
            + _td(
                f.get("separation_power"),
                status(f.get("separation_power"), bf.get("separation_power"), kind="ratio"),
            )
            + _td(bf.get("separation_power"))
            + "</tr>"
        )
    return rows


def _conditional_html(
    cond: dict[str, Any], plots: dict[str, Path], units: Mapping[str, str] | None = None
) -> str:
    parts = [
        "<h2>Conditional checks</h2><p class='small'>KS statistic of each feature inside "
        "bins of a condition variable (p-value colour: green p &ge; 0.01, red below). "
        f"Bins with fewer than {cond.get('min_events')} rows per sample are not tested.</p>"
    ]
    for var, entry in cond["variables"].items():
        names: list[str] = []
        for b in entry["bins"]:
            names.extend(n for n in (b.get("features") or {}) if n not in names)
        head = "".join(f"<th class='wrap'>{breakable(n)}</th>" for n in names)
        unit = unit_of(var, units)
        parts.append(
            f"<h3>{html.escape(var)}{f' [{html.escape(unit)}]' if unit else ''}</h3>"
            "<div class='scroll'><table><tr><th>bin</th><th>n ref</th>"
            f"<th>n cand</th>{head}</tr>"
        )
        for b in entry["bins"]:
            cells = ""
            for n in names:
                ks = ((b.get("features") or {}).get(n) or {}).get("ks") or {}
                p = ks.get("pvalue")
                cls = NONE if p is None else (OK if p >= 0.01 else BAD)
                cells += _td(ks.get("statistic"), cls, ".3f")
            parts.append(
                f"<tr><td class='name'>[{b['lo']:.4g}, {b['hi']:.4g})</td>"
                f"<td>{b['n_reference']}</td><td>{b['n_candidate']}</td>{cells}</tr>"
            )
        parts.append("</table></div>")
        if var in plots:
            parts.append(f"<img src='{_img(plots[var])}' style='max-width:100%;width:760px'>")
    return "\n".join(parts)


def render_html(
    metrics: dict[str, Any],
    plots: dict[str, Any],
    title: str = "hepgen validation report",
    inputs: dict[str, Any] | None = None,
    units: Mapping[str, str] | None = None,
) -> str:
    """The report page: the verdict, the deciding numbers beside their baselines, then the
    details.

    Parameters
    ----------
    metrics : dict
        The ``metrics.json`` content (``ValidationResult.to_dict()``, plus ``objects`` when the
        comparison came from a config).
    plots : dict
        ``{"features": {name: png}, "roc": png, "correlation": png, "conditional": {var: png},
        "tradeoff": png}``.
    title : str
        Page title.
    inputs : dict or None
        Shown in the header: files, tree, command line.
    units : mapping or None
        ``{feature: unit}`` over the unit inferred from each name.

    Returns
    -------
    str
        The HTML page (plots embedded as base64: it opens offline).

    References
    ----------
    The metrics' papers are cited in :mod:`hepgen.validation.report.sections`.

    Examples
    --------
    >>> page = render_html({"n_reference": 10, "n_candidate": 10, "weighted": False,
    ...                     "features": {}}, {})
    >>> page.startswith("<!DOCTYPE html>") and "http://" not in page
    True
    """
    m = metrics
    out = _header_html(m, title, inputs)
    out += _summary_html(m)
    out += _partitioned_html(m)
    out += _multivariate_html(m)
    out += metric_sections_html(m, plots, units)
    out += _objects_html(m)
    out += _figures_html(plots)
    out += _importances_html(m)
    adj = "<th>Holm / BH p</th>" if multiple_testing_lookup(m) else ""
    out.append(
        "<h2>Per-feature tests</h2>"
        + scroll(
            "<table><tr><th class='name'>feature</th><th class='name'>unit</th>"
            "<th class='wrap'>non-finite ref / cand</th><th>KS</th>"
            f"<th>KS p</th>{adj}<th>KS base</th><th>&chi;&sup2;/ndf</th><th>ndf</th>"
            f"<th>&chi;&sup2; p</th>{adj}<th>&chi;&sup2;/ndf base</th><th>W1</th><th>W1 base</th>"
            "<th>sep. power</th><th>sep. base</th></tr>"
            + "".join(_feature_rows(m, units))
            + "</table>"
        )
        + "<p class='small'>W1 in the feature's unit; KS, &chi;&sup2; and separation power "
        "are dimensionless.</p>"
    )
    if m.get("conditional"):
        out.append(_conditional_html(m["conditional"], plots.get("conditional") or {}, units))
    out += _tradeoff_html(m, plots)
    out += _distributions_html(plots)
    out += _notes_and_timings_html(m)
    if m.get("verdict"):
        out.append(_verdict_line(m))
    out.append("</body></html>")
    return "\n".join(out)


#: The colour legend under the header.
_LEGEND = (
    "<p class='legend small'>Colours against the reference-vs-reference baseline: "
    "<span class='ok' style='background:#d9f2d9'>compatible (p &ge; 0.01, or distance "
    "&le; 2&times; baseline)</span><span style='background:#fcebc2'>significant but within "
    "2&times; the baseline effect (or 2-5&times; baseline)</span>"
    "<span style='background:#f7c6c6'>different</span></p>"
)


def _header_html(m: dict[str, Any], title: str, inputs: dict[str, Any] | None) -> list[str]:
    """Head, title, version stamp, verdict, non-finite counts, inputs, sample sizes, legend."""
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
        f"</title><style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.append(f"<p class='small'>hepgen {__version__}, {stamp}</p>")
    if m.get("verdict"):
        out.append(_verdict_line(m))
    out.append(_nonfinite_html(m))
    out.append(glance_html(m))
    if inputs:
        out.append(
            "<div class='scroll'><table>"
            + "".join(
                f"<tr><th class='name'>{html.escape(str(k))}</th><td class='name'>"
                f"{html.escape(str(v))}</td></tr>"
                for k, v in inputs.items()
            )
            + "</table></div>"
        )
    out.append(
        "<div class='scroll'><table><tr><th></th><th>reference</th><th>candidate</th></tr>"
        f"<tr><td class='name'>rows</td><td>{m['n_reference']}</td><td>{m['n_candidate']}</td></tr>"
        f"<tr><td class='name'>effective rows</td>{_td(m.get('n_eff_reference'), fmt='.6g')}"
        f"{_td(m.get('n_eff_candidate'), fmt='.6g')}</tr>"
        f"<tr><td class='name'>weighted</td><td colspan=2>{m['weighted']}</td></tr></table></div>"
    )
    out.append(_LEGEND)
    return out


def _summary_html(m: dict[str, Any]) -> list[str]:
    """The headline numbers: classifier AUC, largest KS, per-feature p-values."""
    s = m.get("summary") or {}
    return [
        "<h2>Summary</h2><ul>"
        f"<li>classifier AUC: <b>{_num(s.get('c2st_auc'))}</b> (baseline "
        f"{_num(_get(m, 'baseline', 'summary', 'c2st_auc'))}; 0.5 = indistinguishable)</li>"
        f"<li>largest KS statistic: <b>{_num(s.get('max_ks'))}</b> in "
        f"<code>{html.escape(str(s.get('max_ks_feature')))}</code> (baseline largest "
        f"{_num(_get(m, 'baseline', 'summary', 'max_ks'))})</li>"
        f"<li>per-feature p-values below 0.05: {s.get('n_pvalues_below_0.05')} of "
        f"{s.get('n_pvalues')} (about 5 % expected by chance); smallest p-value after Bonferroni: "
        f"{_num(s.get('min_pvalue_bonferroni'))}</li>" + _multiple_testing_item(m) + "</ul>"
    ]


def _multiple_testing_item(m: dict[str, Any]) -> str:
    """The count of rejections against the number expected by chance (multiple testing)."""
    mt = m.get("multiple_testing") or {}
    if not mt.get("n_tests"):
        return ""
    return (
        f"<li>multiple testing: {_num(mt.get('n_rejected'))} of {_num(mt.get('n_tests'))} "
        f"tests reject at {_num(mt.get('alpha'))}, {_num(mt.get('expected'), '.3g')} expected "
        f"by chance (p of the count {_num(mt.get('pvalue_count'), '.3g')}); after Holm "
        f"{_num(_get(mt, 'holm', 'n_rejected'))}, after Benjamini-Hochberg "
        f"{_num(_get(mt, 'bh', 'n_rejected'))} (adjusted p-values in the per-feature table)</li>"
    )


def _partitioned_html(m: dict[str, Any]) -> list[str]:
    """How a comparison over partitions was made: executor, partitions, subsample, bounds."""
    p = m.get("partitioned")
    if not p:
        return []
    sub = p.get("subsample") or {}
    ex = p.get("executor") or {}
    frac = sub.get("fraction") or {}
    return [
        "<h2>Partitioned run</h2><ul>"
        f"<li>{_num(_get(p, 'n_partitions', 'reference'))} reference and "
        f"{_num(_get(p, 'n_partitions', 'candidate'))} candidate partitions of "
        f"{_num(p.get('step_size'))} entries ({_num(_get(p, 'entries', 'reference'))} and "
        f"{_num(_get(p, 'entries', 'candidate'))} entries), executor "
        f"{html.escape(str(ex.get('kind')))} with {_num(ex.get('workers'))} worker(s)</li>"
        "<li>per-feature tests from sums merged over the partitions: &chi;&sup2; and separation "
        f"power exact for their bins; KS and W1 from {_num(p.get('fine_edges'))} fine "
        "reference-quantile bins, the exact KS statistic at most "
        f"<b>{_num(p.get('max_ks_error_bound'))}</b> above the one shown</li>"
        "<li>multivariate tests and plots on a <b>seeded subsample</b>: "
        f"{_num(sub.get('n_reference'))} reference and {_num(sub.get('n_candidate'))} "
        f"candidate rows of group <code>{html.escape(str(sub.get('group')))}</code> (fractions "
        f"{_num(frac.get('reference'))} and {_num(frac.get('candidate'))}, seed "
        f"{_num(sub.get('seed'))})</li></ul>"
    ]


def _multivariate_html(m: dict[str, Any]) -> list[str]:
    """The table of multivariate tests (none when none ran)."""
    rows = _multivariate_rows(m)
    if not rows:
        return []
    return [
        "<h2>Multivariate tests</h2><table><tr><th class='name'>metric</th>"
        "<th>value</th><th>interval / error</th><th>p-value</th><th>baseline</th>"
        "<th class='name'>details</th></tr>" + "".join(rows) + "</table>"
    ]


def _objects_html(m: dict[str, Any]) -> list[str]:
    """Efficiency and fake fraction of both files (config mode)."""
    objects = m.get("objects")
    if not objects:
        return []
    out = [
        "<h2>Objects</h2><table><tr><th class='name'>quantity</th><th>reference</th>"
        "<th>candidate</th><th>p-value (two-proportion z)</th></tr>"
    ]
    for key in ("efficiency", "fake_fraction"):
        e = objects.get(key) or {}
        p = e.get("pvalue")
        cls = NONE if p is None else (OK if p >= 0.01 else BAD)
        out.append(
            f"<tr><td class='name'>{key}</td>{_td(e.get('reference'))}"
            f"{_td(e.get('candidate'), cls)}{_td(p)}</tr>"
        )
    out.append("</table>")
    return out


def _figures_html(plots: dict[str, Any]) -> list[str]:
    """The ROC curve, then the correlation matrices (full width)."""
    out = []
    if plots.get("roc"):
        out.append(
            f"<div class='grid'><figure><img src='{_img(plots['roc'])}'><figcaption>classifier "
            "ROC (held-out events)</figcaption></figure></div>"
        )
    if plots.get("correlation"):
        out.append(
            f"<h3>Correlations</h3><figure class='wide'><img src='{_img(plots['correlation'])}'>"
            "<figcaption>reference and candidate correlations, and their difference</figcaption></figure>"
        )
    return out


def _importances_html(m: dict[str, Any]) -> list[str]:
    """The classifier's feature importances (what gives the candidate away)."""
    c2st = m.get("c2st") or {}
    if not c2st.get("importances"):
        return []
    return [
        "<h3>What gives the candidate away (classifier feature importance, gain)</h3>"
        "<table><tr><th class='name'>feature</th><th>share of gain</th></tr>"
        + "".join(
            f"<tr><td class='name'>{html.escape(k)}</td>{_td(v, fmt='.3f')}</tr>"
            for k, v in c2st["importances"].items()
        )
        + "</table>"
    ]


def _tradeoff_html(m: dict[str, Any], plots: dict[str, Any]) -> list[str]:
    """The sampling trade-off of a fast simulation: PRDC per knob value (plot and table)."""
    t = m.get("tradeoff")
    if not t:
        return []
    knob = t.get("knob")
    symbol = "&psi;" if knob == "truncation" else "T"
    n = t.get("n_events") or {}
    base = t.get("baseline") or {}
    metrics = ("precision", "recall", "density", "coverage")
    out = [
        "<h2 id='tradeoff'>Sampling trade-off</h2><p class='small'>"
        f"The model ({html.escape(str(t.get('kind')))} response) sampled at the conditions of "
        f"{_num(n.get('candidate'))} reference rows, for each {html.escape(str(knob))} "
        f"{symbol} (the other knob as trained), against {_num(n.get('reference'))} other "
        "reference rows: precision and density measure fidelity (generated rows on the "
        "reference's manifold), recall and coverage diversity (PRDC, k = "
        f"{_num(t.get('k'))}, seed {_num(t.get('seed'))}). The baseline compares the two "
        "halves of the reference: a perfect model at this size. Colours: closeness to the "
        "baseline (green within 0.05, amber 0.1).</p>"
    ]
    if plots.get("tradeoff"):
        out.append(f"<img src='{_img(plots['tradeoff'])}' style='width:900px'>")
    head = "".join(f"<th>{k}</th>" for k in metrics)
    rows = []
    for i, v in enumerate(t.get("values") or []):
        label = "none" if v is None else _num(v)
        trained = i == t.get("as_trained")
        if trained:
            label = f"<b>{label} (as trained)</b>"
        cells = "".join(
            _td(t[k][i], status(t[k][i], base.get(k), kind="difference"), ".3f") for k in metrics
        )
        rows.append(f"<tr><td class='name'>{label}</td>{cells}</tr>")
    rows.append(
        "<tr><td class='name'><i>reference vs reference</i></td>"
        + "".join(_td(base.get(k), fmt=".3f") for k in metrics)
        + "</tr>"
    )
    out.append(
        f"<table><tr><th class='name'>{html.escape(str(knob))} {symbol}</th>{head}</tr>"
        + "".join(rows)
        + "</table>"
    )
    notes = t.get("notes") or []
    if notes:
        out.append(
            "<ul class='notes'>"
            + "".join(f"<li>{html.escape(str(x))}</li>" for x in notes)
            + "</ul>"
        )
    return out


def _distributions_html(plots: dict[str, Any]) -> list[str]:
    """The grid of per-feature histograms."""
    feats = plots.get("features") or {}
    if not feats:
        return []
    out = ["<h2>Distributions</h2><div class='grid'>"]
    for name, path in feats.items():
        out.append(
            f"<figure><img src='{_img(path)}'><figcaption>{html.escape(name)}</figcaption></figure>"
        )
    out.append("</div>")
    return out


def _notes_and_timings_html(m: dict[str, Any]) -> list[str]:
    """The notes and the seconds spent per step."""
    out = []
    notes = m.get("notes") or []
    if notes:
        out.append(
            "<h2>Notes</h2><ul class='notes'>"
            + "".join(f"<li>{html.escape(str(n))}</li>" for n in notes)
            + "</ul>"
        )
    timings = m.get("timings") or {}
    per_plot = m.get("plot_timings") or {}
    if timings:
        rows = []
        for k, v in timings.items():
            rows.append(
                f"<tr><td class='name'>{html.escape(k)}</td>{_td(v, fmt='.3f')}<td>s</td></tr>"
            )
            if k == "plots":
                rows += [
                    f"<tr><td class='name'>&nbsp;&nbsp;{html.escape(kind)}</td>"
                    f"{_td(t, fmt='.3f')}<td>s</td></tr>"
                    for kind, t in per_plot.items()
                ]
        out.append("<h2>Timings</h2><table>" + "".join(rows) + "</table>")
    return out
