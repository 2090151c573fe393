//! resp-codec: see ARCHITECTURE.md.
