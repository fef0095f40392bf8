"""The results store: every deploy kept, transactionally, in SQLite or any SQLAlchemy database.

from edgekit.store import open_store, record
run_id = record(deploy_result)                 # default store, or record(result, url)
with open_store("sqlite:///team.sqlite") as s:  # or a PostgreSQL URL for a team
    s.runs(limit=10); s.load(run_id); s.history(since=...)
"""

from edgekit.store.location import resolve_url
from edgekit.store.opening import open_store, record
from edgekit.store.schema import SCHEMA_VERSION
from edgekit.store.store import RunSummary, Store, StoredRun

__all__ = ["SCHEMA_VERSION", "RunSummary", "Store", "StoredRun", "open_store", "record", "resolve_url"]
