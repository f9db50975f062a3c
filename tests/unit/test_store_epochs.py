"""Key epochs: V = E_b(H(y)) in a CSPRNG order, atomic switch, match-time filtering, refresh."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from cleanroom.crypto import BatchEngine, get_suite
from cleanroom.errors import StoreError
from cleanroom.identifiers import hash_message
from cleanroom.store import consent, epochs
from cleanroom.store.database import Database, init_database
from cleanroom.store.importer import import_platform_csv
from cleanroom.store.users import delete_user

USERS = 60


@pytest.fixture
def engine() -> Iterator[BatchEngine]:
    with BatchEngine(workers=1) as in_process:
        yield in_process


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database, _ = init_database(tmp_path / "platform.db")
    path = tmp_path / "in.csv"
    rows = [f"u{i},email,user{i}@example.com,signup,true" for i in range(USERS)]
    rows += [f"u{i},phone,+1415555{i:04d},two_factor,true" for i in range(5)]
    path.write_text("user_id,type,value,source,ads_matching_consent\n" + "\n".join(rows) + "\n")
    import_platform_csv(database, path)
    with database:
        yield database


def _message(db: Database, identifier_id: int) -> bytes:
    kind, value = db.conn.execute(
        "SELECT type, value FROM identifiers WHERE id = ?", (identifier_id,)
    ).fetchone()
    return hash_message(kind, hashlib.sha256(value.encode()).digest())


def _files(db: Database) -> list[str]:
    """The epochs' files: keys and arrays (not the lock, not the audit key, which stays)."""
    return sorted(
        p.name
        for d in (db.keys_dir, db.epochs_dir)
        for p in d.iterdir()
        if ".lock" not in p.name and p != db.audit_key_path
    )


def test_rotate_computes_v_for_every_eligible_identifier(db: Database, engine: BatchEngine) -> None:
    epoch = epochs.rotate(db, engine=engine)
    assert (epoch.epoch_id, epoch.size, epoch.generation) == (1, USERS, 0)
    matchable = epochs.matchable_epoch(db)
    suite = get_suite(epoch.suite_id)
    key = epochs.epoch_key(db, epoch)
    ids = np.load(db.epochs_dir / f"{db.instance_id}-epoch1-g0.ids.npy")
    expected = engine.hash_and_encrypt(suite, key, [_message(db, int(i)) for i in ids], suite.dst)
    assert np.array_equal(matchable.elements, expected)
    assert matchable.elements.shape == (USERS, suite.element_size)
    users = dict(db.conn.execute("SELECT id, user_row FROM identifiers").fetchall())
    assert matchable.user_rows.tolist() == [users[int(i)] for i in ids]
    # Shuffled: the chance that 60 positions come out in id order is 1/60!.
    assert ids.tolist() != sorted(ids.tolist())
    assert _files(db) == sorted(
        [f"{db.instance_id}-epoch1.key"]
        + [f"{db.instance_id}-epoch1-g0.{n}.npy" for n in ("V", "ids", "users")]
    )


def test_next_rotation_destroys_the_retired_key_and_files(
    db: Database, engine: BatchEngine
) -> None:
    first = epochs.rotate(db, engine=engine)
    old_v = epochs.matchable_epoch(db).elements
    second = epochs.rotate(db, engine=engine)
    assert second.epoch_id == first.epoch_id + 1
    assert all(name.startswith(f"{db.instance_id}-epoch2") for name in _files(db))
    with pytest.raises(StoreError, match="cannot read key file"):
        epochs.epoch_key(db, first)
    # A new key: no element of the old V appears in the new one.
    new_v = epochs.matchable_epoch(db).elements
    assert not {bytes(r) for r in old_v} & {bytes(r) for r in new_v}
    states = db.conn.execute("SELECT id, state FROM key_epochs ORDER BY id").fetchall()
    assert states == [(1, "retired"), (2, "current")]


def test_loss_of_eligibility_applies_at_match_time_without_recompute(
    db: Database, engine: BatchEngine
) -> None:
    epochs.rotate(db, engine=engine)
    consent.revoke(db, "u1")
    consent.set_opt_out(db, "u2", "sale_opt_out", True)
    delete_user(db, "u3")
    matchable = epochs.matchable_epoch(db)
    assert len(matchable.elements) == USERS - 3
    gone = {
        r[0] for r in db.conn.execute("SELECT id FROM users WHERE external_id IN ('u1','u2','u3')")
    }
    assert not gone & set(matchable.user_rows.tolist())
    assert epochs.current_epoch(db).size == USERS  # type: ignore[union-attr]


def test_refresh_appends_only_newly_eligible_identifiers(
    db: Database, engine: BatchEngine, tmp_path: Path
) -> None:
    consent.revoke(db, "u0")
    epochs.rotate(db, engine=engine)
    before = epochs.matchable_epoch(db).elements.copy()
    consent.grant(db, "u0")
    more = tmp_path / "more.csv"
    more.write_text(
        "user_id,type,value,source,ads_matching_consent\n"
        "new1,email,new1@example.com,signup,true\n"
        "new2,email,new2@example.com,crm,true\n"
    )
    import_platform_csv(db, more)
    epoch, added = epochs.refresh(db, engine=engine)
    assert added == 3 and epoch.size == USERS + 2 and epoch.generation == 1
    after = epochs.matchable_epoch(db).elements
    assert np.array_equal(after[: len(before)], before)
    assert epochs.refresh(db, engine=engine)[1] == 0
    assert all("-g1." in n or n.endswith(".key") for n in _files(db))


def test_crash_during_precompute_leaves_the_old_epoch_current(
    db: Database, engine: BatchEngine
) -> None:
    epochs.rotate(db, engine=engine)
    files = _files(db)

    def crash(_done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        epochs.rotate(db, engine=engine, progress=crash)
    assert epochs.current_epoch(db).epoch_id == 1  # type: ignore[union-attr]
    assert len(epochs.matchable_epoch(db).elements) == USERS
    assert _files(db) == files


def test_orphans_of_a_killed_rotation_are_cleaned_next_time(
    db: Database, engine: BatchEngine
) -> None:
    epochs.rotate(db, engine=engine)
    (db.keys_dir / f"{db.instance_id}-epoch7.key").write_bytes(b"\x00" * 32)
    (db.epochs_dir / f"{db.instance_id}-epoch7-g0.V.npy.tmp").write_bytes(b"partial")
    (db.epochs_dir / "someone-else.V.npy").write_bytes(b"not ours")
    epochs.rotate(db, engine=engine)
    names = _files(db)
    assert "someone-else.V.npy" in names
    assert not [n for n in names if "epoch7" in n or "epoch1" in n]


def test_refresh_without_epoch_and_empty_epochs(db: Database, engine: BatchEngine) -> None:
    with pytest.raises(StoreError, match="no current epoch to refresh"):
        epochs.refresh(db, engine=engine)
    with pytest.raises(StoreError, match="no key epoch yet"):
        epochs.matchable_epoch(db)
    db.conn.execute("UPDATE identifiers SET consent = 'denied'")
    epoch = epochs.rotate(db, engine=engine)
    assert epoch.size == 0
    assert epochs.matchable_epoch(db).elements.shape == (0, 32)


def test_p256_epoch(db: Database, engine: BatchEngine) -> None:
    epoch = epochs.rotate(db, suite_id="p256-sha256-sswu-ro", engine=engine)
    assert epochs.matchable_epoch(db).elements.shape == (USERS, 33)
    assert epoch.suite_id == "p256-sha256-sswu-ro"


def test_unsafe_key_directory_refuses_rotation(db: Database, engine: BatchEngine) -> None:
    db.keys_dir.chmod(0o755)
    with pytest.raises(StoreError, match="0700"):
        epochs.rotate(db, engine=engine)
    assert epochs.current_epoch(db) is None


def test_damaged_epoch_file_is_a_clear_error(db: Database, engine: BatchEngine) -> None:
    epochs.rotate(db, engine=engine)
    (db.epochs_dir / f"{db.instance_id}-epoch1-g0.ids.npy").unlink()
    with pytest.raises(StoreError, match="file missing"):
        epochs.matchable_epoch(db)


def test_rotation_is_audited(db: Database, engine: BatchEngine) -> None:
    epochs.rotate(db, engine=engine)
    epochs.rotate(db, engine=engine)
    row = db.conn.execute(
        "SELECT action, details FROM audit_log ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    assert row[0] == "epoch.rotate" and '"retired":1' in row[1]


def test_precompute_in_many_chunks_matches_one_chunk(
    db: Database, engine: BatchEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(epochs, "PRECOMPUTE_CHUNK", 7)
    epoch = epochs.rotate(db, engine=engine)
    suite = get_suite(epoch.suite_id)
    ids = np.load(db.epochs_dir / f"{db.instance_id}-epoch1-g0.ids.npy")
    expected = engine.hash_and_encrypt(
        suite, epochs.epoch_key(db, epoch), [_message(db, int(i)) for i in ids], suite.dst
    )
    assert np.array_equal(epochs.matchable_epoch(db).elements, expected)


def test_repeated_elements_are_streamed_once_with_every_owner() -> None:
    info = epochs.EpochInfo.__new__(epochs.EpochInfo)  # the epoch is carried through untouched
    rng = np.random.default_rng(3)
    distinct = rng.integers(0, 256, size=(5, 32), dtype=np.uint8)
    # Rows 3 and 5 repeat rows 0 and 1; row 6 repeats row 0 again.
    elements = distinct[[0, 1, 2, 0, 3, 1, 0, 4]]
    users = np.array([10, 11, 12, 13, 14, 15, 16, 17], dtype=np.int64)
    ids = users + 100  # the identifier behind each row
    out = epochs._distinct(info, elements, users, ids)
    assert np.array_equal(out.elements, distinct)
    assert out.user_rows.tolist() == [10, 11, 12, 14, 17]
    assert out.identifier_ids.tolist() == [110, 111, 112, 114, 117]
    rows, owners = out.other_owners
    assert sorted(zip(rows.tolist(), owners.tolist(), strict=True)) == [(0, 13), (0, 16), (1, 15)]
    assert (out.other_identifiers - owners).tolist() == [100, 100, 100]
    # Which (user, identifier) pairs stand behind matched rows: each row's own, then its others'.
    matched_users, matched_ids = out.matched_identifiers(np.array([0, 2], dtype=np.int64))
    assert sorted(zip(matched_users.tolist(), matched_ids.tolist(), strict=True)) == [
        (10, 110),
        (12, 112),
        (13, 113),
        (16, 116),
    ]


def test_elements_sharing_only_a_prefix_are_kept_apart() -> None:
    info = epochs.EpochInfo.__new__(epochs.EpochInfo)
    elements = np.zeros((3, 32), dtype=np.uint8)
    elements[:, 8] = [1, 2, 1]  # same first 8 bytes; rows 0 and 2 are equal, row 1 differs
    users = np.array([1, 2, 3], dtype=np.int64)
    out = epochs._distinct(info, elements, users, users + 10)
    assert out.user_rows.tolist() == [1, 2]
    assert [r.tolist() for r in out.other_owners] == [[0], [3]]


def test_leftovers_of_an_interrupted_rotation_are_destroyed_unless_one_is_running(
    db: Database, engine: BatchEngine
) -> None:
    epochs.rotate(db, engine=engine)
    current = epochs.current_epoch(db)
    assert current is not None
    # What a rotation killed before its switch leaves: the next epoch's key and a partial V.
    leftover_key = db.keys_dir / f"{db.instance_id}-epoch{current.epoch_id + 1}.key"
    leftover_key.write_bytes(bytes(32))
    leftover_v = db.epochs_dir / f"{db.instance_id}-epoch{current.epoch_id + 1}-g0.V.npy.tmp"
    leftover_v.write_bytes(b"partial")
    with epochs._epoch_lock(db):  # a rotation running now: its files are not leftovers
        assert epochs.remove_leftovers(db) is False
    assert leftover_key.exists() and leftover_v.exists()
    assert epochs.remove_leftovers(db) is True
    assert not leftover_key.exists() and not leftover_v.exists()
    assert epochs.current_epoch(db) == current
    assert len(epochs.matchable_epoch(db).user_rows) == current.size
