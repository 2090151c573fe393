//! tenant-policy: see ARCHITECTURE.md.
