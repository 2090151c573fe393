//! Examples of embedding the rkproxy crates; see `examples/`.
