"""Which configuration file a command reads (`--config`, `$TRADERD_CONFIG`, ./traderd.toml, XDG, /etc), and
the installed service's directories when it is the service's own file."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from config.service import SERVICE_CONFIG, SERVICE_RUNTIME_DIR, SERVICE_STATE_DIR, _systemd_dir
from config.settings import Settings


class ConfigChoice(BaseModel):
    """The configuration file a command uses, and why: `path` None means the built-in defaults."""

    model_config = ConfigDict(frozen=True)

    path: Path | None
    origin: str  # "--config", "$TRADERD_CONFIG", "./traderd.toml", "$XDG_CONFIG_HOME", "/etc/traderd"

    def describe(self) -> str:
        return f"configuration: {self.path} (from {self.origin})" if self.path else \
            "configuration: no file: built-in defaults"


def discover_config(explicit: str | os.PathLike[str] | None = None, *, cwd: Path | None = None,
                    system: Path = SERVICE_CONFIG) -> ConfigChoice:
    """The first of `--config`, `$TRADERD_CONFIG`, ./traderd.toml, $XDG_CONFIG_HOME/traderd/traderd.toml,
    /etc/traderd/traderd.toml. A file named explicitly is returned even when missing (loading reports it)."""
    if explicit:
        return ConfigChoice(path=Path(explicit), origin="--config")
    if os.environ.get("TRADERD_CONFIG"):
        return ConfigChoice(path=Path(os.environ["TRADERD_CONFIG"]), origin="$TRADERD_CONFIG")
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for path, origin in (((cwd or Path.cwd()) / "traderd.toml", "./traderd.toml"),
                         (Path(xdg) / "traderd" / "traderd.toml", "$XDG_CONFIG_HOME"),
                         (system, str(system.parent))):
        if path.is_file():
            return ConfigChoice(path=path, origin=origin)
    return ConfigChoice(path=None, origin="built-in defaults")


def is_service_config(path: Path | None, system: Path = SERVICE_CONFIG) -> bool:
    try:
        return path is not None and path.resolve() == system.resolve()
    except OSError:
        return False


def with_service_dirs(settings: Settings, *, state: Path = SERVICE_STATE_DIR,
                      runtime: Path = SERVICE_RUNTIME_DIR) -> Settings:
    """The service's directories where neither the file, the environment nor systemd chose others."""
    chosen = settings.daemon.model_fields_set
    update: dict[str, Path] = {}
    if "state_dir" not in chosen and _systemd_dir("STATE_DIRECTORY") is None:
        update["state_dir"] = state
    if "runtime_dir" not in chosen and _systemd_dir("RUNTIME_DIRECTORY") is None:
        update["runtime_dir"] = runtime
    if not update:
        return settings
    return settings.model_copy(update={"daemon": settings.daemon.model_copy(update=update)})
