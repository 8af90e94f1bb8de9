"""A ctransformers script, run by kettle: only the import line and the model name changed.

The model name was "TheBloke/Llama-2-7B-GGUF" (a Hugging Face repository); here it is the
bundled smollm2 (a llama-architecture GGUF), which kettle pulls into its store on first use.
model_file picks a file inside a repository or directory and has nothing to pick in a store
model; gpu_layers warns once that kettle runs on the CPU.

    python examples/ctransformers_example.py
"""

from kettle import AutoModelForCausalLM
llm = AutoModelForCausalLM.from_pretrained("smollm2", model_file="llama-2-7b.Q4_K_M.gguf", model_type="llama", gpu_layers=50, max_new_tokens=256, repetition_penalty=1.1, temperature=0.1, stream=True)
prompt = "AI is going to"
print(llm(prompt, stream=False))
tokens = llm.tokenize(prompt)
import time; start = time.time(); n = 0
for token in llm.generate(tokens):
    print(llm.detokenize(token), end="", flush=True); n += 1
elapsed = time.time() - start
print(f"\n{n / elapsed:.2f} tokens/s, {1000 * elapsed / n:.1f} ms/token")
