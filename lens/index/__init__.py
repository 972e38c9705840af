"""The operator's catalog: item metadata in SQLite plus a faiss vector index."""
