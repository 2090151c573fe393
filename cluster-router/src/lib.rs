//! cluster-router: see ARCHITECTURE.md.
