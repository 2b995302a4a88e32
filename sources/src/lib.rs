//! ferry-sources
pub mod backup;
