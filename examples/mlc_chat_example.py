"""An mlc-llm ChatModule script, run by kettle: only the import lines and the model name changed.

The model name was "Llama-2-7b-chat-hf-q4f16_1" (a compiled mlc model); here it is the
bundled smollm2, which kettle pulls into its store on first use.

    python examples/mlc_chat_example.py
"""

from kettle import ChatModule
from kettle.callback import StreamToStdout

# Create a ChatModule instance
cm = ChatModule(model="smollm2")

# Generate a response for a given prompt
output = cm.generate(
    prompt="What is the meaning of life?",
    progress_callback=StreamToStdout(callback_interval=2),
)

# Print prefill and decode performance statistics
print(f"Statistics: {cm.stats()}\n")

output = cm.generate(
    prompt="How many points did you list out?",
    progress_callback=StreamToStdout(callback_interval=2),
)

# Reset the chat module by
cm.reset_chat()
