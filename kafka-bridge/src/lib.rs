//! kafka-bridge: see ARCHITECTURE.md.
