"""The `traderd` command line: run, check, init, url, status, flatten, replay, risk tools."""
