"""traderd, the daemon: intake, risk, execution, store, chat-ops and their wiring."""
