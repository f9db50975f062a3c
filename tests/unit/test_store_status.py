"""Status counts: users, identifiers, eligible, excluded by reason, epoch."""

from __future__ import annotations

from pathlib import Path

from cleanroom.crypto import BatchEngine
from cleanroom.store import consent, epochs
from cleanroom.store.database import init_database
from cleanroom.store.eligibility import EXCLUSION_REASONS
from cleanroom.store.importer import import_platform_csv
from cleanroom.store.status import platform_status
from cleanroom.store.users import delete_user


def test_status_counts_everything(tmp_path: Path) -> None:
    db, _ = init_database(tmp_path / "platform.db")
    path = tmp_path / "in.csv"
    path.write_text(
        "user_id,type,value,source,ads_matching_consent\n"
        "a,email,a@example.com,signup,true\n"
        "a,phone,+14155552671,two_factor,true\n"
        "b,email,b@example.com,signup,false\n"
        "c,email,c@example.com,signup,true\n"
        "d,email,d@example.com,signup,true\n"
        "e,email,e@example.com,signup,true\n"
        "f,email,f@example.com,kiosk,true\n"
    )
    with db:
        import_platform_csv(db, path)
        consent.revoke(db, "c")
        consent.set_opt_out(db, "d", "sale_opt_out", True)
        delete_user(db, "e")
        summary = platform_status(db).to_dict()
        assert summary == {
            "users": 5,
            "identifiers": 7,
            "eligible_identifiers": 1,
            "excluded": {
                "deleted": 1,
                "source_unknown": 1,
                "source_not_permitted": 1,
                "opted_out": 1,
                "revoked": 1,
                "no_consent": 1,
            },
            "epoch": None,
        }
        assert list(summary["excluded"]) == list(EXCLUSION_REASONS)
        with BatchEngine(workers=1) as engine:
            epoch = epochs.rotate(db, engine=engine)
        shown = platform_status(db).to_dict()["epoch"]
        assert shown["id"] == epoch.epoch_id and shown["size"] == 1
        assert shown["created_at"].endswith("Z")
