"""SASRec hyper-parameters: one validated dataclass that round-trips through a plain dict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from recsys.errors import ConfigError


@dataclass(frozen=True)
class SASRecConfig:
    """Shape of a SASRec backbone. ``num_items`` excludes the padding index 0."""

    num_items: int
    max_len: int = 50
    hidden_size: int = 50
    n_blocks: int = 2
    n_heads: int = 1
    dropout: float = 0.2
    norm_first: bool = True
    """Pre-LayerNorm blocks (as the authors' code); ``False`` gives post-LayerNorm."""
    ffn_multiplier: int = 1
    """Feed-forward width = ``ffn_multiplier * hidden_size`` (the paper uses 1)."""

    def __post_init__(self) -> None:
        checks = [
            (self.num_items >= 1, f"num_items must be >= 1, got {self.num_items}"),
            (self.max_len >= 1, f"max_len must be >= 1, got {self.max_len}"),
            (self.hidden_size >= 1, f"hidden_size must be >= 1, got {self.hidden_size}"),
            (self.n_blocks >= 1, f"n_blocks must be >= 1, got {self.n_blocks}"),
            (self.n_heads >= 1, f"n_heads must be >= 1, got {self.n_heads}"),
            (0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}"),
            (self.ffn_multiplier >= 1, f"ffn_multiplier must be >= 1, got {self.ffn_multiplier}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        if self.hidden_size % self.n_heads:
            raise ConfigError(
                f"n_heads ({self.n_heads}) must divide hidden_size ({self.hidden_size})"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SASRecConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown SASRec config keys: {', '.join(unknown)}")
        return cls(**values)
