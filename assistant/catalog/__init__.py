"""The models the product runs on (LLM, embedding, reranker) and their recorded licence and provenance."""
