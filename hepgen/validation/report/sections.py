"""HTML of the report's "deciding numbers" and of the generative-model metrics' sections.

:func:`glance_html` is the block under the verdict: the few numbers that decide it, each
beside its reference-vs-reference baseline and coloured like the tables (see
:mod:`hepgen.validation.report.html`).  The section functions render the ``metrics.json``
entries ``prd``, ``ndb``, ``memorisation``, ``inception``, ``likelihood`` and
``multiple_testing`` (nothing when an entry is absent or None); centroids and log-likelihoods
are given in physical units (:mod:`hepgen.validation.report.units`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from hepgen.validation.report._base import (
    BAD,
    NONE,
    OK,
    WARN,
    _get,
    _img,
    _num,
    _td,
    breakable,
    scroll,
)
from hepgen.validation.report._base import status as _status
from hepgen.validation.report.units import axis_label, unit_of

__all__ = ["glance_html", "metric_sections_html", "multiple_testing_lookup"]

#: Over- and under-populated NDB bins listed (each, most significant first).
MAX_NDB_BINS = 10
#: Memorisation cells listed (largest |z| first).
MAX_CELLS = 10


def _esc(x: Any) -> str:
    return html.escape(str(x))


def _tile(label: str, value: str, baseline: str, cls: str, unit: str = "") -> str:
    """One deciding number: label, value (with unit), baseline, colour class."""
    cls_attr = f" class='{cls}'" if cls != NONE else ""
    base = f"<br><span class='lbl'>baseline {baseline}</span>" if baseline else ""
    unit = f" <span class='lbl'>{_esc(unit)}</span>" if unit else ""
    return f"<div{cls_attr}><span class='lbl'>{label}</span><br><b>{value}</b>{unit}{base}</div>"


def _p_class(p: Any) -> str:
    return NONE if p is None else (OK if p >= 0.01 else BAD)


def glance_html(m: Mapping[str, Any]) -> str:
    """The deciding numbers, each with its baseline and colour (empty when none is present).

    Parameters
    ----------
    m : mapping
        ``metrics.json`` content.

    Returns
    -------
    str
        HTML.

    References
    ----------
    Lopez-Paz & Oquab, ICLR 2017 (C2ST); Gretton et al., JMLR 13 (2012) 723 (MMD); Sajjadi et
    al., NeurIPS 2018 (PRD); Richardson & Weiss, NeurIPS 2018 (NDB); Meehan et al., AISTATS
    2020 (data copying); Salimans et al., NeurIPS 2016 (IS); Holm, Scand. J. Stat. 6 (1979) 65.

    Examples
    --------
    >>> m = {"c2st": {"auc": 0.51, "pvalue": 0.3}, "baseline": {"c2st": {"auc": 0.50}}}
    >>> "classifier AUC" in glance_html(m)
    True
    """
    b = m.get("baseline") or {}
    tiles = []
    c = m.get("c2st") or {}
    if c.get("auc") is not None:
        bauc = _get(b, "c2st", "auc")
        cls = _status(
            abs(c["auc"] - 0.5), None if bauc is None else abs(bauc - 0.5), c.get("pvalue")
        )
        tiles.append(_tile("classifier AUC (0.5 = same)", _num(c["auc"]), _num(bauc), cls))
    mm = m.get("mmd") or {}
    if mm.get("value") is not None:
        bm = _get(b, "mmd", "value")
        cls = _status(mm["value"], bm, mm.get("pvalue"))
        tiles.append(_tile("MMD&sup2;", f"{_num(mm['value'], '.3g')}", _num(bm, ".3g"), cls))
    s = m.get("summary") or {}
    feat = s.get("max_ks_feature")
    if s.get("max_ks") is not None:
        f = _get(m, "features", str(feat), "ks") or {}
        bks = _get(b, "features", str(feat), "ks", "statistic")
        cls = _status(f.get("statistic"), bks, f.get("pvalue"))
        tiles.append(
            _tile(
                f"worst KS: <code>{_esc(feat)}</code>",
                _num(s["max_ks"]),
                f"{_num(bks)} (largest {_num(_get(b, 'summary', 'max_ks'))})",
                cls,
            )
        )
    mt = m.get("multiple_testing") or {}
    if mt.get("n_tests"):
        holm = _get(mt, "holm", "n_rejected")
        pc = mt.get("pvalue_count")
        cls = OK if (pc is None or pc >= 0.01) and not holm else (BAD if holm else WARN)
        tiles.append(
            _tile(
                f"p &lt; {_num(mt.get('alpha'))} (raw; Holm, BH)",
                f"{mt.get('n_rejected')} of {mt.get('n_tests')}; {_num(holm)}, "
                f"{_num(_get(mt, 'bh', 'n_rejected'))}",
                f"{_num(mt.get('expected'), '.3g')} by chance (p {_num(pc, '.2g')})",
                cls,
            )
        )
    elif s.get("n_pvalues"):
        tiles.append(
            _tile(
                "per-feature p &lt; 0.05",
                f"{s.get('n_pvalues_below_0.05')} of {s.get('n_pvalues')}",
                f"{0.05 * s['n_pvalues']:.3g} by chance",
                NONE,
            )
        )
    tiles += _new_metric_tiles(m, b)
    if not tiles:
        return ""
    return "<h2>Deciding numbers</h2><div class='glance'>" + "".join(tiles) + "</div>"


def _new_metric_tiles(m: Mapping[str, Any], b: Mapping[str, Any]) -> list[str]:
    tiles = []
    p = m.get("prd")
    if p:
        bp = b.get("prd") or {}
        tiles.append(
            _tile(
                "PRD F<sub>8</sub> / F<sub>1/8</sub> (recall / precision)",
                f"{_num(p.get('f_8'), '.3f')} / {_num(p.get('f_1_8'), '.3f')}",
                f"{_num(bp.get('f_8'), '.3f')} / {_num(bp.get('f_1_8'), '.3f')}" if bp else "",
                _status(p.get("statistic"), bp.get("statistic"), p.get("pvalue")),
            )
        )
    n = m.get("ndb")
    if n:
        bn = b.get("ndb") or {}
        tiles.append(
            _tile(
                "NDB/K (different bins)",
                f"{_num(n.get('ndb'))}/{_num(n.get('k'))} = {_num(n.get('ndb_over_k'), '.3f')}",
                _num(bn.get("ndb_over_k"), ".3f") if bn else "",
                _status(n.get("ndb_over_k"), bn.get("ndb_over_k"), n.get("pvalue")),
            )
        )
    mem = m.get("memorisation")
    if mem:
        bmem = b.get("memorisation") or {}
        tiles.append(
            _tile(
                "memorisation test p",
                _num(mem.get("pvalue"), ".3g"),
                _num(bmem.get("pvalue"), ".3g") if bmem else "",
                # red where the verdict withholds PASS: p below its alpha
                NONE
                if mem.get("pvalue") is None
                else (OK if mem["pvalue"] >= (m.get("verdict") or {}).get("alpha", 0.01) else BAD),
            )
        )
    lk = m.get("likelihood")
    if lk and lk.get("total"):
        t = lk["total"]
        bound = "" if lk.get("exact", True) else " (bound)"
        tiles.append(
            _tile(
                f"held-out log-likelihood{bound}",
                f"{_num(t.get('mean'), '.4g')} &plusmn; {_num(t.get('stderr'), '.2g')}",
                "",
                NONE,
                unit=str(t.get("unit") or "nats per object"),
            )
        )
    inc = m.get("inception")
    if inc:
        binc = b.get("inception") or {}
        bgap = None
        if binc.get("inception_score_candidate") is not None:
            bgap = abs(binc["inception_score_candidate"] - binc["inception_score_reference"])
        gap = None
        if inc.get("inception_score_candidate") is not None:
            gap = abs(inc["inception_score_candidate"] - inc["inception_score_reference"])
        tiles.append(
            _tile(
                "IS analogue, cand. / ref.",
                f"{_num(inc.get('inception_score_candidate'), '.3f')} / "
                f"{_num(inc.get('inception_score_reference'), '.3f')}",
                f"gap {_num(bgap, '.3f')}" if bgap is not None else "",
                _status(gap, bgap, inc.get("pvalue")),
            )
        )
    return tiles


def multiple_testing_lookup(m: Mapping[str, Any]) -> dict[tuple[str, str], tuple[Any, Any]]:
    """``{(feature, test): (holm, bh)}`` adjusted p-values of ``m["multiple_testing"]``.

    Parameters
    ----------
    m : mapping
        ``metrics.json`` content.

    Returns
    -------
    dict

    References
    ----------
    S. Holm, Scand. J. Stat. 6 (1979) 65; Y. Benjamini and Y. Hochberg, JRSS B 57 (1995) 289.

    Examples
    --------
    >>> t = {"feature": "x", "test": "ks", "pvalue": 0.01, "holm": 0.02, "bh": 0.02}
    >>> multiple_testing_lookup({"multiple_testing": {"tests": [t]}})
    {('x', 'ks'): (0.02, 0.02)}
    """
    tests = _get(m, "multiple_testing", "tests") or []
    return {
        (str(t.get("feature")), str(t.get("test"))): (t.get("holm"), t.get("bh")) for t in tests
    }


def metric_sections_html(
    m: Mapping[str, Any], plots: Mapping[str, Any], units: Mapping[str, str] | None = None
) -> list[str]:
    """The sections of PRD, NDB, memorisation, IS analogue and held-out likelihood.

    Parameters
    ----------
    m : mapping
        ``metrics.json`` content.
    plots : mapping
        Plot paths (``plots["prd"]``: the PRD curve).
    units : mapping or None
        ``{feature: unit}`` over the name-based default.

    Returns
    -------
    list of str
        HTML fragments (empty when none of the entries is present).

    References
    ----------
    Sajjadi et al., NeurIPS 2018, arXiv:1806.00035; Richardson & Weiss, NeurIPS 2018,
    arXiv:1805.12462; Meehan, Chaudhuri & Dasgupta, AISTATS 2020, arXiv:2004.05675; Salimans
    et al., NeurIPS 2016, arXiv:1606.03498; Che et al., ICLR 2017 (mode score).

    Examples
    --------
    >>> metric_sections_html({}, {})
    []
    """
    out: list[str] = []
    b = m.get("baseline") or {}
    out += _prd_html(m.get("prd"), b.get("prd"), plots.get("prd"))
    out += _ndb_html(m.get("ndb"), b.get("ndb"), units)
    alpha = (m.get("verdict") or {}).get("alpha", 0.01)
    out += _memorisation_html(m.get("memorisation"), b.get("memorisation"), units, alpha)
    inc = m.get("inception") or {}
    out += _inception_html(inc, b.get("inception"), inc.get("label") or m.get("label"))
    out += _likelihood_html(m.get("likelihood"), units)
    return out


def _note(d: Mapping[str, Any]) -> str:
    return f"<p class='small'>{_esc(d['note'])}</p>" if d.get("note") else ""


def _sizes(d: Mapping[str, Any], *keys: str) -> str:
    parts = [f"{k.removeprefix('n_')} {d[k]}" for k in keys if d.get(k) is not None]
    return "<p class='small'>rows used: " + ", ".join(parts) + "</p>" if parts else ""


def _prd_html(p: Any, bp: Any, plot: Any) -> list[str]:
    if not p:
        return []
    bp = bp or {}
    keys = (("f_8", "F<sub>8</sub> (recall)"), ("f_1_8", "F<sub>1/8</sub> (precision)"))
    rows = "".join(
        f"<tr><td class='name'>{label}</td>{_td(p.get(k), fmt='.4f')}{_td(bp.get(k), fmt='.4f')}"
        "</tr>"
        for k, label in keys
    )
    rows += (
        f"<tr><td class='name'>test statistic</td>"
        f"{_td(p.get('statistic'), _status(p.get('statistic'), bp.get('statistic'), p.get('pvalue')))}"
        f"{_td(bp.get('statistic'))}</tr><tr><td class='name'>p-value</td>{_td(p.get('pvalue'))}"
        f"{_td(bp.get('pvalue'))}</tr>"
    )
    out = [
        "<h2 id='prd'>Precision and recall of distributions (PRD)</h2><p class='small'>"
        f"k-means with {_num(p.get('n_clusters'))} clusters of the union (standardised), "
        f"averaged over {_num(p.get('n_runs'))} clusterings, {_num(p.get('n_angles'))} angles; "
        "F<sub>8</sub> low: modes of the reference missing; F<sub>1/8</sub> low: the candidate "
        "puts events where the reference has none (Sajjadi et al. 2018).</p>",
        "<div class='grid'>",
        "<table><tr><th class='name'></th><th>cand. vs ref.</th><th>ref. vs ref.</th></tr>"
        + rows
        + "</table>",
    ]
    if plot:
        out.append(f"<figure><img src='{_img(plot)}'><figcaption>PRD curve</figcaption></figure>")
    out.append("</div>")
    out.append(_sizes(p, "n_reference", "n_candidate") + _note(p))
    return out


def _centroid_cells(centroid: Mapping[str, Any] | None, names: list[str]) -> str:
    centroid = centroid or {}
    return "".join(_td(centroid.get(n), fmt=".4g") for n in names)


def _ndb_html(n: Any, bn: Any, units: Mapping[str, str] | None) -> list[str]:
    if not n:
        return []
    bn = bn or {}
    cls = _status(n.get("ndb_over_k"), bn.get("ndb_over_k"), n.get("pvalue"))
    out = [
        "<h2 id='ndb'>Over- and under-populated regions (NDB)</h2><p class='small'>"
        f"The reference split into K = {_num(n.get('k'))} k-means bins; a two-proportion test "
        f"per bin at level {_num(n.get('alpha'))} (Richardson &amp; Weiss 2018); about "
        f"{_num(n.get('expected'), '.3g')} bins differ by chance.</p>"
        "<table><tr><th class='name'></th><th>NDB</th><th>NDB/K</th><th>&chi;&sup2;/ndf</th>"
        "<th>p-value</th></tr><tr><td class='name'>cand. vs ref.</td>"
        f"{_td(n.get('ndb'))}{_td(n.get('ndb_over_k'), cls, '.3f')}"
        f"<td>{_num(n.get('statistic'), '.4g')}/{_num(n.get('ndf'))}</td>{_td(n.get('pvalue'))}"
        "</tr><tr><td class='name'>ref. vs ref.</td>"
        f"{_td(bn.get('ndb'))}{_td(bn.get('ndb_over_k'), fmt='.3f')}"
        f"<td>{_num(bn.get('statistic'), '.4g')}/{_num(bn.get('ndf'))}</td>"
        f"{_td(bn.get('pvalue'))}</tr></table>"
    ]
    bins = [x for x in n.get("bins") or [] if x.get("significant")]
    names = list(n.get("feature_names") or [])
    if not names:
        for x in bins:
            names += [k for k in (x.get("centroid") or {}) if k not in names]
    head = "".join(f"<th class='wrap'>{breakable(axis_label(k, units))}</th>" for k in names)
    for direction, word in (("over", "over-populated"), ("under", "under-populated")):
        chosen = [x for x in bins if x.get("direction") == direction]
        chosen.sort(key=lambda x: x.get("pvalue") if x.get("pvalue") is not None else 1.0)
        if not chosen:
            continue
        rows = "".join(
            f"<tr><td>{_num(x.get('index'))}</td>{_td(x.get('reference_fraction'), fmt='.4f')}"
            f"{_td(x.get('candidate_fraction'), BAD, '.4f')}{_td(x.get('z'), fmt='+.2f')}"
            f"{_td(x.get('pvalue'), fmt='.2g')}{_centroid_cells(x.get('centroid'), names)}</tr>"
            for x in chosen[:MAX_NDB_BINS]
        )
        more = len(chosen) - MAX_NDB_BINS
        out.append(
            f"<h3>Bins the candidate {word} ({len(chosen)}"
            + (f"; the {MAX_NDB_BINS} most significant shown" if more > 0 else "")
            + ")</h3>"
            + scroll(
                "<table><tr><th>bin</th><th>ref. fraction</th><th>cand. fraction</th><th>z</th>"
                f"<th>p</th>{head}</tr>{rows}</table>"
            )
        )
    out.append(_sizes(n, "n_reference", "n_candidate", "n_fit") + _note(n))
    return out


def _memorisation_html(
    mem: Any, bmem: Any, units: Mapping[str, str] | None, alpha: float = 0.01
) -> list[str]:
    if not mem:
        return []
    bmem = bmem or {}
    nd = mem.get("near_duplicates") or {}
    # red where the verdict withholds PASS: p below its alpha
    cls = NONE if mem.get("pvalue") is None else (OK if mem["pvalue"] >= alpha else BAD)
    out = [
        "<h2 id='memorisation'>Memorisation (data copying)</h2><p class='small'>Distances of "
        "generated rows to their nearest training row against those of held-out reference "
        "rows (Meehan et al. 2020 three-sample test, per cell and overall; a negative statistic"
        " means generated rows sit closer to the training set than new data do), and the rows "
        "within &epsilon; of a training row (near duplicates).</p>"
        "<table><tr><th class='name'></th><th>value</th><th>baseline</th></tr>"
        f"<tr><td class='name'>statistic (C<sub>T</sub>)</td>{_td(mem.get('statistic'), cls)}"
        f"{_td(bmem.get('statistic'))}</tr>"
        f"<tr><td class='name'>p-value</td>{_td(mem.get('pvalue'))}{_td(bmem.get('pvalue'))}</tr>"
        f"<tr><td class='name'>median distance to training, cand. / held-out</td>"
        f"<td>{_num(mem.get('median_distance_candidate'))} / "
        f"{_num(mem.get('median_distance_reference'))}</td><td></td></tr>"
    ]
    if nd:
        ndcls = _p_class(nd.get("pvalue"))
        out.append(
            f"<tr><td class='name'>near duplicates (&epsilon; = {_num(nd.get('epsilon'))}), "
            "cand. / held-out</td>"
            f"<td class='{ndcls}'>{_num(nd.get('candidate'))} ({_num(nd.get('candidate_fraction'), '.3g')}) / "
            f"{_num(nd.get('reference'))} ({_num(nd.get('reference_fraction'), '.3g')}), "
            f"p {_num(nd.get('pvalue'), '.3g')}</td><td></td></tr>"
        )
    out.append("</table>")
    cells = sorted(
        (c for c in mem.get("cells") or [] if c.get("z") is not None), key=lambda c: c["z"]
    )[:MAX_CELLS]
    if cells:
        names: list[str] = []
        for c in cells:
            names += [k for k in (c.get("centroid") or {}) if k not in names]
        head = "".join(f"<th class='wrap'>{breakable(axis_label(k, units))}</th>" for k in names)
        rows = "".join(
            f"<tr><td>{_num(c.get('index'))}</td><td>{_num(c.get('n_train'))}</td>"
            f"<td>{_num(c.get('n_reference'))}</td><td>{_num(c.get('n_candidate'))}</td>"
            f"{_td(c.get('z'), BAD if c['z'] < -3 else NONE, '+.2f')}"
            f"{_centroid_cells(c.get('centroid'), names)}</tr>"
            for c in cells
        )
        out.append(
            f"<h3>Cells closest to copying (of {_num(mem.get('n_cells'))})</h3>"
            + scroll(
                "<table><tr><th>cell</th><th>n train</th><th>n held-out</th><th>n cand.</th>"
                f"<th>Z</th>{head}</tr>{rows}</table>"
            )
        )
    out.append(_sizes(mem, "n_train", "n_reference", "n_candidate") + _note(mem))
    return out


def _confusion(matrix: Any, classes: list[str], caption: str, label: Any) -> str:
    if not matrix:
        return ""
    head = "".join(f"<th>{_esc(c)}</th>" for c in classes)
    rows = ""
    for c, row in zip(classes, matrix, strict=False):
        cells = ""
        for v in row:
            shade = int(255 - 120 * max(0.0, min(1.0, float(v)))) if v is not None else 255
            cells += f"<td style='background:rgb({shade},{shade},255)'>{_num(v, '.3f')}</td>"
        rows += f"<tr><th class='name'>{_esc(c)}</th>{cells}</tr>"
    return (
        f"<figure><table><tr><th class='name'>true {_esc(label or 'class')} &darr; / "
        f"predicted &rarr;</th>{head}</tr>{rows}</table><figcaption>{caption}</figcaption>"
        "</figure>"
    )


def _inception_html(inc: Any, binc: Any, label: Any) -> list[str]:
    if not inc:
        return []
    binc = binc or {}
    classes = [str(c) for c in inc.get("classes") or []]
    rows = ""
    for key, name in (
        ("inception_score", "inception score"),
        ("mode_score", "mode score"),
        ("accuracy", "classifier accuracy"),
    ):
        rows += (
            f"<tr><td class='name'>{name}</td>{_td(inc.get(key + '_candidate'), fmt='.4f')}"
            f"{_td(inc.get(key + '_reference'), fmt='.4f')}"
            f"{_td(binc.get(key + '_candidate'), fmt='.4f')}</tr>"
        )
    cls = _p_class(inc.get("pvalue"))
    return [
        "<h2 id='inception'>Inception-score analogue</h2><p class='small'>A classifier of "
        f"<code>{_esc(label or 'the class')}</code> trained on the reference stands in for "
        "Inception: IS = exp E[KL(p(y|x) || p(y))] (Salimans et al. 2016) and the mode score "
        "(Che et al. 2017) of candidate and reference; the confusion matrices (rows: true "
        "class, row-normalised) show which classes the candidate blurs.</p>"
        "<table><tr><th class='name'></th><th>candidate</th><th>reference</th>"
        f"<th>baseline (ref. vs ref.)</th></tr>{rows}</table>"
        f"<p>test of equal confusion: &chi;&sup2;/ndf {_num(inc.get('statistic'), '.4g')}/"
        f"{_num(inc.get('ndf'))}, <span class='{cls}'>p {_num(inc.get('pvalue'), '.3g')}"
        "</span></p><div class='grid'>"
        + _confusion(inc.get("confusion_reference"), classes, "reference", label)
        + _confusion(inc.get("confusion_candidate"), classes, "candidate", label)
        + "</div>"
        + _sizes(inc, "n_train", "n_reference", "n_candidate")
        + _note(inc)
    ]


def _likelihood_html(lk: Any, units: Mapping[str, str] | None = None) -> list[str]:
    if not lk:
        return []
    exact = lk.get("exact", True)
    what = "log-likelihood" if exact else "lower bound on the log-likelihood"
    total = lk.get("total") or {}
    unit = _esc(total.get("unit") or "nats per object")

    def pm(e: Any, key: str) -> str:
        return f"{_num(_get(e, key, 'mean'))} &plusmn; {_num(_get(e, key, 'stderr'), '.2g')}"

    def shift(e: Any) -> str:
        d, se = _get(e, "difference", "mean"), _get(e, "difference", "stderr")
        off = d is not None and se is not None and abs(d) > 5 * se and abs(d) > 0.01
        return f"<td class='{BAD if off else OK}'>{pm(e, 'difference')}</td>"

    rows = "".join(
        f"<tr><td class='name'>{_esc(name)}</td><td>{pm(e, 'model')}</td>"
        f"<td>{pm(e, 'reference')}</td>{shift(e)}"
        f"<td>{_esc(e.get('unit') or unit_of(name, units) or '–')}</td></tr>"
        for name, e in (lk.get("per_target") or {}).items()
    )
    per = (
        "<h3>Per target: marginal held-out log-likelihood</h3><p class='small'>Each target's "
        "density estimated by a histogram of the model's samples (model) and of one half of "
        "the reference (reference: a perfect model), both evaluated on the other half, in nats "
        "per object and per unit of the target; the difference estimates -KL of that marginal "
        "(0 for a perfect model; red: more than 5 standard errors and 0.01 nats off).</p>"
        "<table><tr><th class='name'>target</th><th>model</th><th>reference</th>"
        f"<th>model - reference</th><th>unit</th></tr>{rows}</table>"
        if rows
        else ""
    )
    return [
        f"<h2 id='likelihood'>Held-out {what}</h2><p class='small'>Mean log p(x | c) of the "
        f"held-out reference under the model <code>{_esc(lk.get('model'))}</code> "
        f"({_esc(lk.get('kind'))}; {_esc(lk.get('method'))}), in {unit}, with its standard "
        "error: higher is better; compare models on the same held-out file."
        + ("" if exact else " <b>A bound, not the likelihood itself.</b>")
        + "</p>"
        f"<p>total: <b>{_num(total.get('mean'))} &plusmn; {_num(total.get('stderr'), '.2g')}</b>"
        f" {unit} (n = {_num(total.get('n'))})</p>" + per + _note(lk)
    ]
