"""Running under a supervisor: systemd notify + watchdog, redacted logging, Sentry."""
