"""The one exception type of the optimizer spec format."""

from __future__ import annotations

__all__ = ["OptimizerSpecError"]


class OptimizerSpecError(ValueError):
    """An optimizer or schedule spec is malformed.

    ``field`` is the dotted path of the offending entry (``"b1"``,
    ``"learning_rate.decay_steps"``, ``"name"``, or ``"spec"`` for the whole mapping); the
    message starts with that path and says what was expected.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
