"""Tests for the service definitions: systemd unit (sandbox score, syntax, wiring) and launchd plist."""

from __future__ import annotations

import plistlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import Settings

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "traderd.service"
PLIST = SYSTEMD / "traderd.plist"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Section -> key -> every value in order (systemd keys repeat, so configparser will not do)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"directive outside a section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not a KEY=VALUE line: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def run_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


# ------------------------------------------------------------------------------------------------ unit
def test_unit_lifecycle_and_credentials() -> None:
    service = parse_unit(UNIT.read_text())["Service"]
    single = {key: values[-1] for key, values in service.items()}
    assert single["Type"] == "notify" and single["NotifyAccess"] == "main"
    assert single["ExecStart"] == "/opt/traderd/venv/bin/traderd run --config /etc/traderd/traderd.toml"
    assert single["RuntimeDirectory"] == "traderd"  # the admin socket's directory, $RUNTIME_DIRECTORY
    assert single["WatchdogSec"] == "30"
    assert single["Restart"] == "on-failure" and single["RestartSec"] == "5"
    assert single["TimeoutStopSec"] == "30" and single["KillSignal"] == "SIGTERM"
    assert single["DynamicUser"] == "yes" and single["StateDirectory"] == "traderd"
    assert set(single["RestrictAddressFamilies"].split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert single["MemoryDenyWriteExecute"] == "yes"

    credentials = [v.split(":", 1)[0] for v in service["LoadCredential"]]
    assert credentials == ["webhook.secret", "api.token"]
    for name in credentials:  # each credential id must name a real option: section.field
        section, field = name.split(".")
        model = Settings.model_fields[section].annotation
        assert isinstance(model, type) and field in model.model_fields, name


@pytest.mark.slow
@needs_analyze
def test_unit_sandbox_exposure_is_at_most_2() -> None:
    result = run_analyze("security", "--offline=yes", "--no-pager", str(UNIT))
    output = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", output)
    if match is None and "offline" in output.lower():
        pytest.skip(f"this systemd-analyze cannot analyse offline: {output.strip()[:200]}")
    assert match is not None, output
    assert float(match.group(1)) <= 2.0, output


def _verify(unit: Path) -> tuple[int, list[str]]:
    result = run_analyze("verify", "--man=no", str(unit))
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    return result.returncode, complaints


@pytest.mark.slow
@needs_analyze
def test_unit_verifies(tmp_path: Path) -> None:
    # `verify` checks that ExecStart= is executable, so point it at something that exists here.
    text = UNIT.read_text().replace("/opt/traderd/venv/bin/traderd", sys.executable)
    unit = tmp_path / "traderd.service"
    unit.write_text(text)
    probe = tmp_path / "probe.service"
    probe.write_text(f"[Service]\nExecStart={sys.executable} -V\nBogusDirective=1\n")
    probe_rc, probe_complaints = _verify(probe)
    if not any("BogusDirective" in line for line in probe_complaints):
        pytest.skip(f"systemd-analyze verify does not work offline here (rc={probe_rc})")

    rc, complaints = _verify(unit)
    assert rc == 0 and complaints == [], complaints


# ------------------------------------------------------------------------------------------------ launchd
def test_plist_parses_and_has_the_expected_keys() -> None:
    with PLIST.open("rb") as fh:
        job = plistlib.load(fh)
    assert job["Label"] == "io.traderd.daemon"
    program = job["ProgramArguments"]
    assert program[0].startswith("/") and program[0].endswith("/traderd") and program[1] == "run"
    config = program[program.index("--config") + 1]
    assert job["EnvironmentVariables"]["TRADERD_CONFIG"] == config
    assert job["RunAtLoad"] is True
    assert job["KeepAlive"] == {"SuccessfulExit": False, "Crashed": True}  # restart on crash, not clean stop
    assert job["StandardErrorPath"].startswith("/")
    assert job["ExitTimeOut"] >= 15
