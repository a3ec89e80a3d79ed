"""The durable store: tables, migrations, the repository the engine writes through, key-value state."""
