"""kubemind workers: the async path (Kafka -> CV worker -> store -> signed webhook)."""
