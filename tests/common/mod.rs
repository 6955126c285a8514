//! Helpers shared by the test modules: data, a naive f64 reference, tie-aware comparison.

#![allow(dead_code)]

pub mod data;
pub mod parity;
pub mod reference;
