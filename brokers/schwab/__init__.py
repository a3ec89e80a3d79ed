"""Charles Schwab Trader API adapter: OAuth login and renewal, orders with TRIGGER/OCO brackets, journal-then-lookup."""
