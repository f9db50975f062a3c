"""The platform's own source taxonomy: registered, permitted, denied, never permitted."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cleanroom.errors import InvalidInput
from cleanroom.store import audit, sources
from cleanroom.store.audiences import audience_members, store_audience
from cleanroom.store.database import Database, init_database, transaction
from cleanroom.store.eligibility import DEFAULT_PERMITTED_SOURCES, NEVER_PERMITTED_SOURCES
from cleanroom.store.importer import import_platform_csv

ROWS = """user_id,type,value,source,ads_matching_consent
a,maid,6f1c5a3e-0d2b-4c1e-9a7f-2b3c4d5e6f70,app,true
b,email,b@example.com,Web_Signup ,true
c,email,c@example.com,signup,true
d,phone,+14155552671,two_factor,true
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    path = tmp_path / "in.csv"
    path.write_text(ROWS)
    import_platform_csv(database, path)
    with database:
        yield database


def _reasons(db: Database) -> dict[str, str | None]:
    return dict(
        db.conn.execute(
            "SELECT u.external_id, e.excluded_reason FROM identifier_eligibility e "
            "JOIN users u ON u.id = e.user_row"
        ).fetchall()
    )


def _states(db: Database) -> dict[str, str]:
    return {source.name: source.state for source in sources.list_sources(db)}


def test_init_registers_the_defaults_and_the_never_permitted_four(db: Database) -> None:
    states = _states(db)
    assert {name for name, state in states.items() if state == "permitted"} == (
        DEFAULT_PERMITTED_SOURCES
    )
    assert {name for name, state in states.items() if state == "never_permitted"} == (
        NEVER_PERMITTED_SOURCES
    )
    # Names only seen in the data are listed, unregistered, with how many identifiers hold them.
    listed = {s.name: s for s in sources.list_sources(db)}
    assert (listed["app"].state, listed["app"].identifiers) == ("unregistered", 1)
    assert listed["web_signup"].state == "unregistered"


def test_an_unregistered_source_is_stored_but_never_eligible(db: Database) -> None:
    assert _reasons(db) == {
        "a": "source_unknown",
        "b": "source_unknown",
        "c": None,
        "d": "source_not_permitted",
    }


def test_permitting_makes_stored_identifiers_eligible_without_reimport(db: Database) -> None:
    change = sources.permit_sources(db, [" APP ", "web_signup"])
    assert change.names == ("app", "web_signup") and change.changed == ("app", "web_signup")
    assert change.identifiers == 2
    assert _reasons(db)["a"] is None and _reasons(db)["b"] is None
    again = sources.permit_sources(db, ["app"])
    assert again.changed == ()
    last = list(audit.entries(db.conn))[-1]
    assert last.action == "source.permit" and last.details["sources"] == ["app"]


@pytest.mark.parametrize("names", [["two_factor"], ["app", "Recovery"], ["contact_upload "]])
def test_a_never_permitted_source_cannot_be_permitted_and_nothing_changes(
    db: Database, names: list[str]
) -> None:
    entries = len(list(audit.entries(db.conn)))
    with pytest.raises(InvalidInput, match=r"can never be permitted.*Nothing was changed"):
        sources.permit_sources(db, names)
    assert _states(db)["app"] == "unregistered"
    assert len(list(audit.entries(db.conn))) == entries


def test_no_writer_can_permit_a_never_permitted_source(db: Database) -> None:
    # The trigger stops any other writer; the view would exclude it even without the trigger.
    for statement in (
        "UPDATE sources SET permitted = 1 WHERE name = 'two_factor'",
        "INSERT OR REPLACE INTO sources VALUES ('security', 1, 0)",
    ):
        with pytest.raises(sqlite3.DatabaseError, match="can never be permitted"):
            db.conn.execute(statement)
    db.conn.execute("DROP TRIGGER never_permitted_sources_stay_denied_on_update")
    db.conn.execute("UPDATE sources SET permitted = 1 WHERE name = 'two_factor'")
    assert _reasons(db)["d"] == "source_not_permitted"


def test_bad_names_are_refused(db: Database) -> None:
    for names in ([""], ["a b"], ["x" * 65], []):
        with pytest.raises(InvalidInput):
            sources.permit_sources(db, names)


def test_denying_a_source_excludes_it_and_ends_the_memberships_it_carried(db: Database) -> None:
    sources.permit_sources(db, ["app"])
    pairs = db.conn.execute(
        "SELECT i.user_row, i.id FROM identifiers i JOIN users u ON u.id = i.user_row "
        "WHERE u.external_id IN ('a', 'c')"
    ).fetchall()
    with transaction(db.conn):
        stored = store_audience(
            db,
            "s",
            "acme",
            np.array([p[0] for p in pairs], np.int64),
            np.array([p[1] for p in pairs], np.int64),
        )
    assert audience_members(db, stored.audience_id) == ["a", "c"]
    change = sources.deny_sources(db, ["app"])
    assert change.memberships_left == 1
    assert _reasons(db)["a"] == "source_not_permitted"
    assert audience_members(db, stored.audience_id) == ["c"]
    # Permitting it again does not bring the membership back: it was ended, not hidden.
    sources.permit_sources(db, ["app"])
    assert audience_members(db, stored.audience_id) == ["c"]
