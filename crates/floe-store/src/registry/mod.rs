//! Worker-id registries (being written).
