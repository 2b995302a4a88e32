//! ferry-sinks
