//! rkproxy's proxy engine: configuration, backend connections, client sessions and the listener.
//!
//! The `rkproxy` binary (`src/main.rs`) only parses the command line, loads the configuration, installs
//! tracing and runs [`server::start`]. Tests and embedders can do the same in-process:
//!
//! ```no_run
//! # async fn example() -> Result<(), String> {
//! use proxy_bin::config::{CommandLineOverrides, Config};
//! let overrides = CommandLineOverrides {
//!     listen: Some("127.0.0.1:0".into()),
//!     backend: Some("redis://127.0.0.1:6379".into()),
//! };
//! let config = Config::load(None, &overrides).map_err(|e| e.to_string())?;
//! let proxy = proxy_bin::server::start(config).await?;
//! println!("listening on {}", proxy.local_addr);
//! proxy.shutdown().await;
//! # Ok(())
//! # }
//! ```

pub mod backend;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod introspection;
pub mod kafka;
pub mod pool;
pub mod reply;
pub mod server;
pub mod session;
