//! rkproxy's proxy engine: a Redis and Kafka proxy that a service can embed, and that the `rkproxy` binary runs.
//!
//! Build a [`Config`](config::Config) (from TOML, a file, the environment), then start a [`Proxy`]:
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use rkproxy::config::{CommandLineOverrides, Config};
//! let overrides = CommandLineOverrides {
//!     listen: Some("127.0.0.1:0".into()),
//!     backend: Some("redis://127.0.0.1:6379".into()),
//! };
//! let config = Config::load(None, &overrides)?;
//! let proxy = rkproxy::Proxy::builder(config).start().await?;
//! println!("listening on {}", proxy.local_addr());
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The engine is in layers, each importing only the ones below it: the embedding API ([`Proxy`]) and the
//! listener (`server`) → one client connection (`session`) → pools (`pools`: standalone, cluster, Kafka) →
//! backend connections (`backend`). The shared state (`state`) is read by the listener and sessions;
//! configuration (`config`) and reply helpers are read by all. Only [`Proxy`] (with its builder, [`Reloader`]
//! and the reload's [`ReloadReport`] and [`ReloadError`]), [`config`] and the binary's command line ([`cli`])
//! are public.

mod auth_throttle;
mod backend;
pub mod cli;
mod clock;
pub mod config;
mod introspection;
mod memory;
mod metrics;
mod piece_queue;
mod pools;
mod proxy;
mod reply;
mod server;
mod session;
mod shutdown;
mod state;
mod stats;
mod subject;
mod tls;

pub use memory::MemoryCounters;
pub use proxy::{Proxy, ProxyBuilder, Reloader, StartError};
pub use state::{ReloadError, ReloadReport};
