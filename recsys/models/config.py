"""SASRec hyper-parameters, declared once: the architecture, and the backbone config that adds
the catalogue size.

``ArchitectureConfig`` is what an experiment chooses (``TrainConfig.model`` holds one);
``SASRecConfig`` is what a backbone is built from: the same fields plus ``num_items``, which
comes from the data. Both round-trip through a plain dict (checkpoints store it).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from recsys.config import Config
from recsys.errors import ConfigError


class ArchitectureConfig(Config):
    """The shape of the network, independent of the data it is trained on."""

    max_len: Annotated[int, Field(ge=1)] | Literal["auto"] = "auto"
    """Longest history the model reads (items); auto: from the data's history lengths
    (``recsys.training.recipe``)."""
    hidden_size: int = Field(64, ge=1)
    """Embedding and hidden size."""
    n_blocks: int = Field(2, ge=1)
    """Number of self-attention blocks."""
    n_heads: int = Field(1, ge=1)
    """Attention heads per block; must divide hidden_size."""
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] | Literal["auto"] = "auto"
    """Dropout rate everywhere; auto: from the data's density (``recsys.training.recipe``)."""
    norm_first: bool = True
    """Pre-LayerNorm blocks (as the authors' code); False gives post-LayerNorm."""
    ffn_multiplier: int = Field(1, ge=1)
    """Feed-forward width / hidden_size (the paper uses 1)."""
    item_dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Training only: the chance that a history item's embedding is dropped (its position
    stays), so the model learns to predict from the rest of the history: an augmentation for
    short, sparse histories (the item-masking of CL4SRec, Xie et al. 2022, without its
    contrastive loss). 0 disables it."""

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> ArchitectureConfig:
        if self.hidden_size % self.n_heads:
            raise ValueError(
                f"n_heads ({self.n_heads}) must divide hidden_size ({self.hidden_size})"
            )
        return self


class SASRecConfig(ArchitectureConfig):
    """Shape of a SASRec backbone: every size concrete. ``num_items`` excludes the padding
    index 0."""

    num_items: int = Field(ge=1)
    """Catalogue size V (item indices 1..V; 0 is padding)."""
    max_len: int = Field(50, ge=1)
    """Longest history the model reads (items)."""
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    """Dropout rate everywhere."""

    @classmethod
    def of(cls, architecture: ArchitectureConfig, num_items: int) -> SASRecConfig:
        """The backbone config of ``architecture`` for a catalogue of ``num_items`` items."""
        values = architecture.model_dump()
        unresolved = sorted(key for key, value in values.items() if value == "auto")
        if unresolved:
            raise ConfigError(
                f"{', '.join(unresolved)} still 'auto': resolve the recipe against the data "
                "first (recsys.training.resolve_recipe)"
            )
        return cls(num_items=num_items, **values)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SASRecConfig:
        unknown = sorted(set(values) - set(cls.model_fields))
        if unknown:
            raise ConfigError(f"unknown SASRec config keys: {', '.join(unknown)}")
        return cls(**values)
