"""The tracker's domain: pure functions over plain data, knowing nothing of Kafka or PostgreSQL."""
