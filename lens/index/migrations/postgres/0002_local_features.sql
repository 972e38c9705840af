-- Each image's RootSIFT keypoints for re-ranking (lens.index.rerank), by content hash, with the
-- settings they were computed with: the SQLite catalog's local_features table.
CREATE TABLE local_features (
    content_hash TEXT PRIMARY KEY,
    params TEXT NOT NULL,
    data BYTEA NOT NULL
);
