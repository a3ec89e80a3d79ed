"""Loading the configuration for a CLI command: which file (said on stderr), and its problems in plain words."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from config.discovery import ConfigChoice, discover_config, is_service_config, with_service_dirs
from config.settings import ConfigFileError, Settings, load_settings

EXIT_FAILED = 1
EXIT_USAGE = 2


def problems(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors(include_url=False):
        where = ".".join(str(p) for p in err["loc"]) or "configuration"
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown option (check the spelling against `traderd init`)"
        lines.append(f"{where}: {message}")
    return lines


def load_choice(choice: ConfigChoice) -> Settings | None:
    """The settings from `choice` (problems printed on stderr, None); the service's file brings its directories."""
    try:
        settings = load_settings(choice.path)
    except ConfigFileError as exc:
        print(f"traderd: {exc}", file=sys.stderr)
        return None
    except ValidationError as exc:
        print(f"traderd: the configuration {choice.path or '(built-in defaults)'} has problems:", file=sys.stderr)
        for line in problems(exc):
            print(f"  - {line}", file=sys.stderr)
        return None
    return with_service_dirs(settings) if is_service_config(choice.path) else settings


def load(args: argparse.Namespace) -> Settings | None:
    """Find the file (`--config`, $TRADERD_CONFIG, ./traderd.toml, XDG, /etc/traderd), say which, load it."""
    choice = discover_config(getattr(args, "config", None))
    print(f"traderd: {choice.describe()}", file=sys.stderr)
    return load_choice(choice)
