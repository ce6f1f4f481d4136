"""Feast definitions: who asks (user) and what answers (document), with their online features.

- `user` (join key `user_id`): expertise level (beginner | intermediate | expert), the preferred
  answer length in words, and the tenant. The prompt is written for the user's level and length.
- `document` (join key `source`, the chunk's source in the index: a topic key or a file path):
  a quality score in [0, 1] and when it was last updated. Re-ranking adds the quality score.

Offline sources are parquet files written by generate.py, relative to this folder whichever
feature_store.yaml is used (the cluster's, cluster/feature_store.yaml, too); the RAG image writes
them at build time.
"""

from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float32, Int64, String, UnixTimestamp

user = Entity(name="user", join_keys=["user_id"], value_type=ValueType.STRING, description="who asks")
document = Entity(name="document", join_keys=["source"], value_type=ValueType.STRING, description="a document of the RAG index, keyed by its source")

user_source = FileSource(name="users", path="data/users.parquet", timestamp_field="event_timestamp")
document_source = FileSource(name="documents", path="data/documents.parquet", timestamp_field="event_timestamp")

user_features = FeatureView(
    name="user_features",
    entities=[user],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="expertise_level", dtype=String),
        Field(name="preferred_answer_length", dtype=Int64),
        Field(name="tenant", dtype=String),
    ],
    source=user_source,
    online=True,
)

document_features = FeatureView(
    name="document_features",
    entities=[document],
    ttl=timedelta(days=3650),
    schema=[
        Field(name="quality_score", dtype=Float32),
        Field(name="last_updated", dtype=UnixTimestamp),
    ],
    source=document_source,
    online=True,
)
