"""Tokenizers built from GGUF ``tokenizer.ggml.*`` metadata, matching llama.cpp's ids.

Supported: byte-level BPE (``tokenizer.ggml.model = "gpt2"``, with the
pre-tokenizers listed in ``PRE_TYPES``) and SentencePiece-style vocabularies
(``"llama"``). ``StreamDecoder`` turns generated ids into text without ever
splitting a UTF-8 character.

    tok = Tokenizer.from_metadata(GGUFFile(path).metadata)
    ids = tok.encode("Hello", add_special=True, parse_special=False)
"""

from kettle.tokenizer.pretokenize import PRE_TYPES
from kettle.tokenizer.stream import StreamDecoder
from kettle.tokenizer.tokenizer import Tokenizer
from kettle.tokenizer.vocab import TokenAttr, TokenType, VocabType

__all__ = ["Tokenizer", "StreamDecoder", "TokenAttr", "TokenType", "VocabType", "PRE_TYPES"]
