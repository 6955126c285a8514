//! io (stub)
