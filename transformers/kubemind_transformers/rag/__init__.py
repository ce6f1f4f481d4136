"""Retrieval-augmented generation: the index (`kubemind rag index`) and the RAG transformer.

Per request: embed the question, hybrid search in Milvus (dense HNSW + BM25, fused by RRF), Feast
online features for the user and the retrieved documents, re-rank, build the prompt, forward to
the LLM predictor over OpenAI chat (streaming passed through), answer with the `sources`.
"""
