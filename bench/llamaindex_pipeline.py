"""The baseline: a plain LlamaIndex ingestion pipeline over one folder, one process.

SimpleDirectoryReader -> SentenceSplitter (defaults) -> HuggingFaceEmbedding with the same
packaged all-MiniLM-L6-v2 folder (defaults: fp32, batches of 10) -> FAISS exact inner
product (``IndexFlatIP``) -> ``storage_context.persist``. Written the way its tutorials
write it; the embeddings are computed in their own call only to time that stage apart
(``VectorStoreIndex`` makes exactly the same ``get_text_embedding_batch`` calls itself).

Runs in its own virtual environment (``~/.cache/assistant/bench-llamaindex``), never the
project's; ``bench/ingest.py`` starts it as a whole process and times it from outside.
Prints one JSON object with its stage times on the last line of stdout.

    ~/.cache/assistant/bench-llamaindex/bin/python bench/llamaindex_pipeline.py \
        --model-path MODEL_DIR --persist-dir OUT_DIR FOLDER
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time

for _name, _value in {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "ANONYMIZED_TELEMETRY": "False",
}.items():
    os.environ.setdefault(_name, _value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--persist-dir", required=True)
    parser.add_argument("--chunk-size", type=int, default=None, help="SentenceSplitter chunk_size (default: its own)")
    args = parser.parse_args()

    stages: dict[str, float] = {}
    t = time.perf_counter()
    import faiss
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.core.schema import MetadataMode
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from llama_index.vector_stores.faiss import FaissVectorStore

    stages["import"] = time.perf_counter() - t

    t = time.perf_counter()
    documents = SimpleDirectoryReader(args.folder, recursive=True).load_data()
    stages["parse"] = time.perf_counter() - t

    t = time.perf_counter()
    splitter = SentenceSplitter() if args.chunk_size is None else SentenceSplitter(chunk_size=args.chunk_size)
    nodes = splitter.get_nodes_from_documents(documents)
    stages["chunk"] = time.perf_counter() - t

    t = time.perf_counter()
    embed_model = HuggingFaceEmbedding(model_name=args.model_path, device="cpu")
    stages["model_load"] = time.perf_counter() - t

    t = time.perf_counter()
    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
    vectors = embed_model.get_text_embedding_batch(texts)
    for node, vector in zip(nodes, vectors, strict=True):
        node.embedding = vector
    stages["embed"] = time.perf_counter() - t

    t = time.perf_counter()
    vector_store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(len(vectors[0])))
    storage_context = StorageContext.from_defaults(vector_store=vector_store)
    VectorStoreIndex(nodes, storage_context=storage_context, embed_model=embed_model)
    storage_context.persist(persist_dir=args.persist_dir)
    stages["index"] = time.perf_counter() - t

    pages = sum(1 for d in documents)  # PDFReader yields one document per page
    print(
        json.dumps(
            {
                "documents": len({d.metadata.get("file_path") for d in documents}),
                "pages": pages,
                "chunks": len(nodes),
                "embedded_chars": sum(len(t) for t in texts),
                "stages": stages,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


if __name__ == "__main__":
    main()
