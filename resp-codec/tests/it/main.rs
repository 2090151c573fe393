//! Integration tests for resp-codec, as one test binary.

mod frames;
mod limits;
mod properties;
mod replies;
mod requests;
mod support;
