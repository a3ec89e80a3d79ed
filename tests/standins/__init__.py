"""Stand-ins of the brokers' HTTP APIs for tests, checked against their published contracts."""
