"""Exclusive ownership of accounts: a lock file per state directory, leases with fencing tokens on PostgreSQL."""
