"""mlc-llm's ``mlc_chat.callback`` under kettle's name: ``from kettle.callback import StreamToStdout``."""

from kettle.compat.callback import DeltaCallback, StreamIterator, StreamToStdout, get_delta_message

__all__ = ["DeltaCallback", "StreamToStdout", "StreamIterator", "get_delta_message"]
