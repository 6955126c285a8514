//! Flat index (stub)
/// stub
pub struct FlatIndex;
