"""Model factory over timm, classifier heads, weight sources and freezing policies."""

from edgetl.models.factory import FIRST_CLASS, card_for, create_model, default_preprocess

__all__ = ["FIRST_CLASS", "card_for", "create_model", "default_preprocess"]
