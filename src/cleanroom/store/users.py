"""Deleting a user (a right-to-erasure request).

The user's identifier values are erased and the user row becomes a tombstone (``deleted_at``):
the tombstone keeps a later import of an old export from bringing the user back, and keeps the
status counts honest. The user leaves every stored audience (schema trigger) and is excluded at
match time at once; the user's entries in the current epoch's ``V`` are encrypted values nobody
can link without the epoch key, and they disappear with the next rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

from cleanroom.errors import UnknownUser
from cleanroom.store import audit
from cleanroom.store.database import Database, transaction, unix_now

__all__ = ["UserDeletion", "delete_user"]


@dataclass(frozen=True)
class UserDeletion:
    """The effect of deleting a user.

    Attributes:
        user_id: the user's external id.
        identifiers_erased: identifier values erased.
        audiences_left: stored audiences the user was removed from.
        already_deleted: the user had been deleted before (nothing changed).
    """

    user_id: str
    identifiers_erased: int
    audiences_left: int
    already_deleted: bool = False


def delete_user(db: Database, user_id: str) -> UserDeletion:
    """Delete a user: erase their identifier values and remove them from stored audiences.

    Deleting an already deleted user changes nothing and says so.

    Raises:
        UnknownUser: the platform has no such user.
    """
    conn = db.conn
    with transaction(conn):
        row = conn.execute(
            "SELECT id, deleted_at FROM users WHERE external_id = ?", (user_id,)
        ).fetchone()
        if row is None:
            raise UnknownUser(f"no user {user_id!r} in the platform database")
        user_row, deleted_at = int(row[0]), row[1]
        if deleted_at is not None:
            return UserDeletion(user_id, 0, 0, already_deleted=True)
        memberships = int(
            conn.execute(
                "SELECT COUNT(*) FROM readable_audience_members WHERE user_id = ?", (user_row,)
            ).fetchone()[0]
        )
        erased = conn.execute(
            "UPDATE identifiers SET value = NULL WHERE user_row = ? AND value IS NOT NULL",
            (user_row,),
        ).rowcount
        conn.execute("UPDATE users SET deleted_at = ? WHERE id = ?", (unix_now(), user_row))
        audit.append(
            db,
            "user.delete",
            {"user": user_id, "identifiers_erased": erased, "audiences_left": memberships},
        )
    return UserDeletion(user_id, erased, memberships)
