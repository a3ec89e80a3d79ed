"""Paper broker: simulated fills (broker.py), accounting (book.py) and its durable journal (ledger.py)."""
