"""Normalizing the kept records and building what the advertiser's protocol role takes."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from cleanroom.advertiser._listfile import CustomerList
from cleanroom.advertiser._problems import REASONS, ListProblem, invalid_reason
from cleanroom.errors import ImportFailed
from cleanroom.identifiers import normalize_batch

__all__ = ["PreparedList", "check_something_to_send", "merge_prepared", "prepare_list"]


@dataclass(frozen=True, eq=False)
class PreparedList:
    """The hash-to-curve messages of a list, each with the record it came from.

    Attributes:
        messages: one per valid identifier, grouped by kind (``AdvertiserRole``'s input).
        record_ids: for each message, its record's position among the file's data rows.
        records_sent: records with at least one valid identifier.
        problems: every problem found, in file order: the reading problems, each invalid
            identifier (its record may still be sent), and each record left with no identifier.
        rows_rejected: records not sent for a reason other than consent.
        identifiers_by_kind: valid identifiers read, by kind (a value on several records
            counts on each).
    """

    messages: list[bytes] = field(repr=False)
    record_ids: NDArray[np.int64] = field(repr=False)
    records_sent: int
    problems: tuple[ListProblem, ...]
    rows_rejected: int
    identifiers_by_kind: dict[str, int] = field(default_factory=dict)


def prepare_list(
    customers: CustomerList, *, default_region: str, prehashed: Collection[str] = ()
) -> PreparedList:
    """Normalize each identifier column of the kept records and build the messages.

    An empty cell means the record has no identifier of that kind; it is not a problem.

    Args:
        customers: the list as read.
        default_region: region of phone numbers written without a country code.
        prehashed: kinds whose column holds SHA-256 digests of normalized values.

    Returns:
        The messages with their record ids, and what was rejected.

    Raises:
        InvalidInput: ``default_region`` is not a known region.
    """
    block = _prepare_block(customers, default_region=default_region, prehashed=prehashed)
    return merge_prepared(customers, [block])


def merge_prepared(customers: CustomerList, blocks: Sequence[PreparedList]) -> PreparedList:
    """The prepared list of ``customers`` from its blocks, each prepared as it was read.

    Args:
        customers: the whole list as read (its reading problems are the list's).
        blocks: :func:`prepare_list` of each block of ``customers`` (see ``blocks`` of
            :func:`~cleanroom.advertiser.read_customer_list`), in order.

    Returns:
        What :func:`prepare_list` returns for the whole list.
    """
    problems = [*customers.problems, *(p for block in blocks for p in block.problems)]
    problems.sort(key=lambda problem: problem.row)  # stable: a row's problems keep their order
    by_kind: Counter[str] = Counter()
    for block in blocks:
        by_kind.update(block.identifiers_by_kind)
    record_ids = [block.record_ids for block in blocks]
    return PreparedList(
        messages=[message for block in blocks for message in block.messages],
        record_ids=(np.concatenate(record_ids) if record_ids else np.empty(0, dtype=np.int64)),
        records_sent=sum(block.records_sent for block in blocks),
        problems=tuple(problems),
        rows_rejected=len(customers.problems) + sum(block.rows_rejected for block in blocks),
        identifiers_by_kind={kind: by_kind[kind] for kind in customers.identifiers},
    )


def _prepare_block(
    customers: CustomerList, *, default_region: str, prehashed: Collection[str]
) -> PreparedList:
    """Prepare the records of ``customers``, leaving its reading problems out."""
    kept = len(customers.rows)
    rows = np.asarray(customers.rows, dtype=np.int64)
    given = np.zeros(kept, dtype=bool)
    valid = np.zeros(kept, dtype=bool)
    messages: list[bytes] = []
    record_ids: list[NDArray[np.int64]] = []
    problems: list[ListProblem] = []
    by_kind: dict[str, int] = {}
    for kind, cells in customers.identifiers.items():
        present = _present(cells)
        given[present] = True
        batch = normalize_batch(
            kind,
            cells if len(present) == len(cells) else [cells[i] for i in present.tolist()],
            default_region=default_region,
            prehashed=kind in prehashed,
        )
        accepted = present[np.asarray(batch.indices, dtype=np.intp)]
        by_kind[kind] = len(accepted)
        valid[accepted] = True
        messages.extend(batch.messages())
        record_ids.append(rows[accepted])
        column = customers.columns[kind]
        problems.extend(
            ListProblem(customers.lines[present[r.index]], column, invalid_reason(kind), r.reason)
            for r in batch.rejected
        )
    for i in np.flatnonzero(~valid):
        reason, detail = (
            ("no_valid_identifier", "every identifier given is invalid")
            if given[i]
            else ("no_identifier", "every identifier column is empty")
        )
        problems.append(ListProblem(customers.lines[i], None, reason, detail))
    sent = int(valid.sum())
    return PreparedList(
        messages=messages,
        record_ids=(np.concatenate(record_ids) if record_ids else np.empty(0, dtype=np.int64)),
        records_sent=sent,
        problems=tuple(problems),
        rows_rejected=kept - sent,
        identifiers_by_kind=by_kind,
    )


def _present(cells: Sequence[str]) -> NDArray[np.intp]:
    """The positions of the cells that are neither empty nor blank, ascending.

    A column is mostly empty cells (records with another kind of identifier) and values, so
    it is looked at in C-level passes; blank cells (``isspace`` is true exactly where ``strip``
    leaves nothing) are rare, and then every cell is looked at.
    """
    empty = cells.count("")
    if empty == len(cells):
        return np.zeros(0, dtype=np.intp)
    if any(map(str.isspace, cells)):
        return np.fromiter((i for i, cell in enumerate(cells) if cell.strip()), dtype=np.intp)
    if empty == 0:
        return np.arange(len(cells), dtype=np.intp)
    filled = itertools.compress(itertools.count(), cells)
    return np.fromiter(filled, dtype=np.intp, count=len(cells) - empty)


def check_something_to_send(customers: CustomerList, prepared: PreparedList) -> None:
    """Refuse a list of which no record can be sent, saying why, before any session.

    Raises:
        ImportFailed: no record has marketing consent and a valid identifier.
    """
    if prepared.records_sent:
        return
    name = "the rows given" if customers.path is None else str(customers.path)
    if customers.records_read == 0:
        raise ImportFailed(f"{name} has no records: nothing to match")
    why = [f"{customers.without_consent} without marketing consent"]
    problems = prepared.problems
    reasons = Counter(p.reason for p in problems if not p.reason.startswith("invalid_"))
    why += [f"{count} {REASONS[reason]}" for reason, count in sorted(reasons.items())]
    raise ImportFailed(
        f"none of the {customers.records_read} records of {name} can be sent: " + ", ".join(why)
    )
