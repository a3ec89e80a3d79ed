"""The base of every settings section: unknown keys are refused (a typo is an error, not a silent default)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)
