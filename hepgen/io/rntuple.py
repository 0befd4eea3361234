"""The branches hepgen sees in an RNTuple, and how they are read.

hepgen works with NanoAOD-style branches: scalars (``run``, ``MET_pt``) and lists of numbers
sharing a collection prefix (``Jet_pt``, ``Jet_eta``). An RNTuple stores such data in two
layouts, and both read as those branches:

* **flat fields**, as uproot writes a dict of arrays and as :class:`hepgen.io.writer.RootWriter`
  writes: ``Jet_pt: std::vector<float>``, ``MET_pt: float``. Each field is a branch of the
  same name; each list field carries its own offsets, so a counter (``nJet``) is a branch
  only where the file has one.
* **record fields**, as CMS writes NanoAOD as an RNTuple (a collection is a vector of records,
  a singleton one record): ``Jet: std::vector<{pt, eta, ...}>`` reads as the branches
  ``nJet`` (``uint32``, as in NanoAOD TTrees: the collection's size) and ``Jet_pt``,
  ``Jet_eta``, ...; ``MET: {pt, phi}`` as ``MET_pt``, ``MET_phi``.

Any other field type (strings, nested lists, fixed-size arrays, records in records) is not a
branch: it is left out when every branch is read, and named with its type when asked for.
Where uproot cannot read a field's type at all, the message says so and gives uproot's reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from hepgen.errors import InputError
from hepgen.io.sources import one_line, uproot_reason

__all__ = ["RBranch", "RNTupleBranches", "rntuple_branches"]


@dataclass(frozen=True)
class RBranch:
    """One branch of an RNTuple as hepgen sees it.

    Attributes
    ----------
    name : str
        hepgen's name (``"Jet_pt"``, ``"nJet"``, ``"run"``).
    field : str
        The top-level field it is read from (``"Jet"``).
    sub : str or None
        The subfield of a record field (``"pt"``); ``None`` for a flat field or a counter.
    shape : {"scalar", "list"}
        A number or a list of numbers per entry.
    counter : bool
        The size of the record collection ``field`` (``uint32``).
    typename : str
        The C++ type, for messages.
    """

    name: str
    field: str
    sub: str | None
    shape: str
    counter: bool = False
    typename: str = "?"

    @property
    def expression(self) -> str:
        """What uproot reads for this branch (``"Jet.pt"``; a counter reads its collection's
        first subfield, for the offsets)."""
        return f"{self.field}.{self.sub}" if self.sub is not None else self.field


@dataclass
class RNTupleBranches:
    """Every branch of an RNTuple, and the fields that are not branches (for messages).

    Attributes
    ----------
    branches : dict of str to RBranch
        In the RNTuple's field order (a collection's counter before its branches).
    others : dict of str to (str, str or None)
        Names that are not branches: ``name -> (type name, uproot's reason if it cannot read
        the type)``.
    """

    branches: dict[str, RBranch] = field(default_factory=dict)
    others: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        """Every name, branches and others, for lookups and suggestions."""
        return [*self.branches, *(k for k in self.others if k not in self.branches)]

    def refuse(self, where: str, name: str) -> InputError:
        """The error for asking for ``name``, which is not a branch."""
        typename, why = self.others.get(name, ("?", None))
        if why is not None:
            return InputError(
                f"{where}: field '{name}' has type '{typename}', which uproot cannot read "
                f"({why}); leave it out of the branches read"
            )
        return InputError(
            f"{where}: field '{name}' has type '{typename}'; expected a number or a list of numbers"
        )

    def expressions(self, names: Sequence[str]) -> list[str]:
        """What uproot reads for the branches ``names`` (each once)."""
        out: list[str] = []
        for name in names:
            b = self.branches[name]
            expr = b.expression
            if b.counter:
                first = next(x for x in self.branches.values() if x.field == b.field and x.sub)
                expr = first.expression
            if expr not in out:
                out.append(expr)
        return out

    def select(self, chunk: ak.Array, names: Sequence[str]) -> ak.Array:
        """The branches ``names`` of a chunk that uproot read for :meth:`expressions`."""
        if all(self.branches[n].sub is None and not self.branches[n].counter for n in names):
            return chunk  # flat fields: already the branches
        out = {}
        for name in names:
            b = self.branches[name]
            if b.counter:
                out[name] = np.asarray(ak.num(chunk[b.field], axis=1), dtype=np.uint32)
            elif b.sub is not None:
                out[name] = chunk[b.field][b.sub]
            else:
                out[name] = chunk[b.field]
        return ak.zip(out, depth_limit=1) if out else chunk[[]]


def _numeric_leaf(form: Any) -> bool:
    return (
        isinstance(form, ak.forms.NumpyForm)
        and not form.inner_shape
        and not form.parameters.get("__array__")
        and np.dtype(form.primitive).kind in "biuf"
    )


def _list_of(form: Any) -> Any:
    """The content of a list form (not a string), else ``None``."""
    if isinstance(form, ak.forms.ListOffsetForm | ak.forms.ListForm):
        if not form.parameters.get("__array__"):
            return form.content
    return None


def _records(form: Any) -> bool:
    return isinstance(form, ak.forms.RecordForm) and not form.is_tuple


def _forms(ntuple: Any, names: list[str]) -> dict[str, tuple[Any, str | None]]:
    """The awkward form of every top-level field, or uproot's reason why it has none: made
    at once, and field by field where uproot cannot make it for the whole RNTuple."""
    try:
        form = ntuple.to_akform()[0]
        return {n: (form.content(n), None) for n in names}
    except Exception:  # found field by field below
        pass
    out: dict[str, tuple[Any, str | None]] = {}
    for name in names:
        try:
            out[name] = (ntuple.to_akform(filter_name=[name])[0].content(name), None)
        except Exception as err:  # uproot raises many kinds for unknown types
            out[name] = (None, f"{type(err).__name__}: {one_line(err)}")
    return out


def rntuple_branches(ntuple: Any) -> RNTupleBranches:
    """Map the fields of an RNTuple to hepgen's branches (see the module docstring).

    Parameters
    ----------
    ntuple : uproot RNTuple
        From :func:`hepgen.io.reader.open_tree`.

    Returns
    -------
    RNTupleBranches
    """
    # ntuple.typenames() walks every subfield (seconds for NanoAOD's ~1000 fields): ask the
    # top-level fields, and a record's subfields only where there are records
    typenames = {f.name: f.typename for f in ntuple.fields}
    names = list(ntuple.keys(recursive=False))
    out = RNTupleBranches()

    def sub_typename(name: str, sub: str) -> str:
        try:
            return ntuple[name][sub].typename or "?"
        except Exception:  # a name uproot cannot look up: only for messages
            return "?"

    taken = set(names)  # a flat field wins over a record subfield of the same name

    def add(b: RBranch) -> None:
        derived = b.sub is not None or b.counter
        if b.name not in out.branches and not (derived and b.name in taken):
            out.branches[b.name] = b

    for name, (form, why) in _forms(ntuple, names).items():
        typename = typenames.get(name) or "?"
        content = _list_of(form) if form is not None else None
        if form is None:
            out.others[name] = (typename, why)
        elif _numeric_leaf(form):
            add(RBranch(name, name, None, "scalar", typename=typename))
        elif content is not None and _numeric_leaf(content):
            add(RBranch(name, name, None, "list", typename=typename))
        elif _records(form) or (content is not None and _records(content)):
            record, shape = (form, "scalar") if _records(form) else (content, "list")
            subs = [s for s in record.fields if _numeric_leaf(record.content(s))]
            if shape == "list" and subs:
                add(RBranch(f"n{name}", name, None, "scalar", counter=True, typename="uint32"))
            for s in record.fields:
                sub_type = sub_typename(name, s)
                if s in subs:
                    add(RBranch(f"{name}_{s}", name, s, shape, typename=sub_type))
                else:
                    out.others[f"{name}_{s}"] = (sub_type, None)
            if not subs:
                out.others[name] = (typename or "record", None)
        else:
            out.others[name] = (typename, None)
    return out


def raise_unreadable_field(
    ntuple: Any, fields: RNTupleBranches, names: Sequence[str], start: int, stop: int, where: str
) -> None:
    """After a chunk failed to read: read its branches one by one and raise
    :class:`InputError` naming the first that fails alone (its type and uproot's reason).
    Returns when each reads alone (the caller reports corruption)."""
    for name in names:
        try:
            ntuple.arrays(
                fields.expressions([name]), entry_start=start, entry_stop=stop, library="ak"
            )
        except Exception as err:  # uproot raises many kinds for unknown types
            raise InputError(
                f"{where}: field '{name}' has type '{fields.branches[name].typename}', which "
                f"uproot cannot read ({type(err).__name__}: {uproot_reason(err)}); leave it "
                "out of the branches read"
            ) from err
