"""Naming a store's column roles after ingest: `thresher init STORE --text-column C`.

Roles (`--text-column`, ...) are recorded on each row of `sources`; a store
ingested without `--text-column`, or with the wrong one, gets it here for every
source so far, in one run (its `runs` row says what changed).
"""

from __future__ import annotations

from thresher.storage import schemas
from thresher.storage.errors import ConfigError, ThresherError
from thresher.storage.store import Store


def set_roles(store: Store, roles: dict[str, str]) -> None:
    """Name the text or label column of every source ingested so far. The column must be
    one of the items' columns; with no items yet, any name is recorded."""
    unknown = sorted(set(roles) - {"text_column", "label_column"})
    assert not unknown, unknown
    with store.read() as con:
        (sources,) = con.execute("SELECT count(*) FROM sources").fetchall()[0]
        columns = [d[0] for d in con.execute("SELECT * FROM items LIMIT 0").description]
    if not sources:
        raise ThresherError(
            f"store {store.root} has no sources yet: name the columns when you ingest"
        )
    have = [c for c in columns if c not in ("item_id", "batch_id")]
    for role, column in roles.items():
        if have and column not in have:
            option = "--" + role.replace("_", "-")
            raise ThresherError(
                f"store {store.root}: no column {column!r} ({option}); "
                f"columns: {schemas.listing(have)}"
            )
    with store.run("init", dict(roles)) as run:
        run.roles.update(roles)
        run.message = ", ".join(f"{k} = {v}" for k, v in roles.items())


def check_consistent(store: Store, roles: dict[str, str]) -> None:
    """Refuse a text or label column other than the one the store's sources name: later
    commands need one of each (`Store.text_column`)."""
    for role in ("text_column", "label_column"):
        if role not in roles:
            continue
        with store.read() as con:
            recorded = [
                r[0]
                for r in con.execute(
                    f"SELECT DISTINCT {role} FROM sources WHERE {role} IS NOT NULL ORDER BY 1"
                ).fetchall()
            ]
        if recorded and roles[role] not in recorded:
            option = "--" + role.replace("_", "-")
            raise ConfigError(
                f"{option} {roles[role]!r}: the store's sources name {recorded[0]!r}; "
                f"ingest with {option} {recorded[0]!r}, or rename it for every source with "
                f"thresher init {store.root} {option} {roles[role]!r}"
            )
