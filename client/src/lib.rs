//! ferry-kafka
