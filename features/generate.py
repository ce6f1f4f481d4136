"""Write the offline sources: data/users.parquet and data/documents.parquet.

Users are a fixed demo set; documents are the demo corpus's sources (the Python Language
Reference topics), each with a quality score and a last-updated time derived from its text, so
the files are the same on every machine. `kubemind features apply` and `materialize` run this
when they are missing; the RAG image runs it at build time.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
from pathlib import Path

USERS = [
    # user_id, expertise_level, preferred_answer_length (words), tenant
    ("alice", "expert", 40, "acme"),
    ("bob", "beginner", 120, "acme"),
    ("carol", "intermediate", 80, "globex"),
]


def document_rows() -> list[tuple[str, float, dt.datetime]]:
    """(source, quality_score, last_updated) per Python reference topic: longer, more complete
    topics score higher (a stand-in for an editorial score)."""
    from pydoc_data.topics import topics

    longest = max(len(text) for text in topics.values())
    rows = []
    for key in sorted(topics):
        text = topics[key]
        seed = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
        quality = round(0.5 + 0.5 * min(1.0, 4 * len(text) / longest), 4)
        updated = dt.datetime(2024, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=seed % 700)
        rows.append((key, quality, updated))
    return rows


def write(repo: Path) -> list[Path]:
    import pandas as pd

    data = repo / "data"
    data.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    users = pd.DataFrame(
        [{"user_id": u, "expertise_level": e, "preferred_answer_length": n, "tenant": t, "event_timestamp": stamp}
         for u, e, n, t in USERS]
    )  # fmt: skip
    documents = pd.DataFrame(
        [{"source": s, "quality_score": q, "last_updated": u, "event_timestamp": stamp} for s, q, u in document_rows()]
    )
    documents["quality_score"] = documents["quality_score"].astype("float32")
    paths = [data / "users.parquet", data / "documents.parquet"]
    users.to_parquet(paths[0], index=False)
    documents.to_parquet(paths[1], index=False)
    return paths


if __name__ == "__main__":
    for path in write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent):
        print(path)
