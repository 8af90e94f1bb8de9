"""Model architectures: one file each, and the registry that maps names to them."""

from kettle.models.encoder import Encoder, EncoderConfig
from kettle.models.registry import ARCHITECTURES, load_model
from kettle.models.transformer import Transformer, TransformerConfig

__all__ = ["ARCHITECTURES", "load_model", "Encoder", "EncoderConfig", "Transformer", "TransformerConfig"]
