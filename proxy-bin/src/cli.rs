//! The command line: `rkproxy --config FILE` or `rkproxy --listen ADDR --backend redis://HOST:PORT`.

use std::path::PathBuf;

use crate::config::CommandLineOverrides;

/// What the command line asks for.
#[derive(Debug, Default)]
pub struct CommandLine {
    pub config_file: Option<PathBuf>,
    pub overrides: CommandLineOverrides,
    /// Validate the configuration and exit.
    pub check_only: bool,
    pub show_help: bool,
    pub show_version: bool,
}

pub const USAGE: &str = "\
rkproxy: a Redis proxy

USAGE:
    rkproxy --config FILE
    rkproxy --listen 127.0.0.1:7480 --backend redis://127.0.0.1:6379

OPTIONS:
    -c, --config FILE      TOML configuration (see examples/rkproxy.toml)
    -l, --listen ADDR      listen address (overrides the file)
    -b, --backend URL      a standalone Redis to proxy to, as redis://HOST:PORT (a pool named `default`)
        --check            validate the configuration and exit
    -h, --help             show this help
    -V, --version          show the version

Every configuration key can also be set from the environment with the RKPROXY_ prefix, nested keys
separated by `__`, for example RKPROXY_TIMEOUTS__CONNECT_MS=500.

SIGHUP reads the configuration again (file, options, environment) and applies it while clients stay
connected, or changes nothing and logs why; listen, worker_threads and log need a restart.
SIGTERM or SIGINT shuts down gracefully.";

/// A command line the binary cannot run with (exit code 64).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0} needs a value")]
    NeedsValue(&'static str),
    #[error("unknown argument '{0}' (see --help)")]
    Unknown(String),
    #[error("give --config FILE, or --backend redis://HOST:PORT (see --help)")]
    NothingToServe,
}

impl CommandLine {
    /// Parses arguments (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<CommandLine, CliError> {
        let mut command_line = CommandLine::default();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline_value) = match arg.split_once('=') {
                Some((flag, value)) if flag.starts_with("--") => {
                    (flag.to_owned(), Some(value.to_owned()))
                }
                _ => (arg.clone(), None),
            };
            let mut value = |name: &'static str| {
                inline_value
                    .clone()
                    .or_else(|| args.next())
                    .ok_or(CliError::NeedsValue(name))
            };
            match flag.as_str() {
                "-c" | "--config" => {
                    command_line.config_file = Some(PathBuf::from(value("--config")?))
                }
                "-l" | "--listen" => command_line.overrides.listen = Some(value("--listen")?),
                "-b" | "--backend" => command_line.overrides.backend = Some(value("--backend")?),
                "--check" => command_line.check_only = true,
                "-h" | "--help" => command_line.show_help = true,
                "-V" | "--version" => command_line.show_version = true,
                other => return Err(CliError::Unknown(other.to_owned())),
            }
        }
        if command_line.config_file.is_none()
            && command_line.overrides.backend.is_none()
            && !command_line.show_help
            && !command_line.show_version
        {
            return Err(CliError::NothingToServe);
        }
        Ok(command_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<CommandLine, CliError> {
        CommandLine::parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn forms() {
        let line = parse(&["--listen", "127.0.0.1:1", "--backend=redis://h:2"]).unwrap();
        assert_eq!(line.overrides.listen.as_deref(), Some("127.0.0.1:1"));
        assert_eq!(line.overrides.backend.as_deref(), Some("redis://h:2"));
        assert!(parse(&["-c", "x.toml", "--check"]).unwrap().check_only);
        assert!(parse(&[]).unwrap_err().to_string().contains("--config"));
        assert!(parse(&["--bogus"])
            .unwrap_err()
            .to_string()
            .contains("--bogus"));
        assert!(parse(&["--config"])
            .unwrap_err()
            .to_string()
            .contains("needs a value"));
    }
}
