"""``accelsim validate``: the paper's efficiency claims, reproduced end to end."""

from .claims import Claim, Section, ValidateConfig
from .validate import ValidateResult, run_validate

__all__ = ["run_validate", "ValidateResult", "ValidateConfig", "Claim", "Section"]
