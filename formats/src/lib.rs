//! ferry-formats
