//! faiss (stub)
