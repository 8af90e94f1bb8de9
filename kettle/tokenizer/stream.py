"""Streaming detokenizer: ids in, text out, never splitting a UTF-8 character.

A token may end in the middle of a multi-byte character (byte-fallback tokens,
BPE byte pieces). ``feed`` returns only complete text and holds back an
incomplete trailing sequence until the next token completes it; bytes that can
never become valid UTF-8 come out as U+FFFD, exactly as
``Tokenizer.decode`` would render them, so the concatenation of everything
``feed`` and ``flush`` return equals ``decode`` of the same ids.
"""

from __future__ import annotations

import codecs

from kettle.tokenizer.tokenizer import Tokenizer

__all__ = ["StreamDecoder"]


class StreamDecoder:
    """Incremental ``Tokenizer.decode`` for one sequence (not thread-safe).

    ``special=False`` (the default) hides control tokens, as generated text should.
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False) -> None:
        self.tokenizer = tokenizer
        self.special = special
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Text completed by this token ('' while a character is still incomplete).

        Raises ``TokenizerError`` for an id outside the vocabulary.
        """
        piece = self.tokenizer.token_to_piece(token_id, self.special)
        return self._decoder.decode(piece, final=False)

    def flush(self) -> str:
        """Whatever is held back, with an unfinished character as U+FFFD; resets."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
