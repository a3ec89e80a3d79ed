"""Paper broker: simulated fills (broker.py), order rules (models.py), accounting (book.py), journal (ledger.py)."""
