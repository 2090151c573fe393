//! The `rkproxy` binary: parse the command line, load the configuration, install tracing, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use rkproxy::cli::{CommandLine, USAGE};
use rkproxy::config::{Config, LogFormat};
use rkproxy::{Proxy, Reloader};
use tracing_subscriber::EnvFilter;

/// sysexits.h EX_USAGE / EX_CONFIG: a bad command line or configuration.
const EXIT_USAGE: u8 = 64;
const EXIT_CONFIG: u8 = 78;

fn main() -> ExitCode {
    let command_line = match CommandLine::parse(std::env::args().skip(1)) {
        Ok(command_line) => command_line,
        Err(problem) => {
            eprintln!("rkproxy: {problem}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if command_line.show_help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if command_line.show_version {
        println!("rkproxy {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let config = match Config::load(command_line.config_file.as_deref(), &command_line.overrides) {
        Ok(config) => config,
        Err(problem) => {
            eprintln!("rkproxy: bad configuration: {problem}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if command_line.check_only {
        println!("configuration OK");
        return ExitCode::SUCCESS;
    }
    install_tracing(&config);

    let builder =
        Proxy::builder(config).reload_source(command_line.config_file, command_line.overrides);
    let reloader = builder.reloader();
    match builder.run_until(serve_signals(reloader)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problem) => {
            eprintln!("rkproxy: {problem}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr in the configured format. The Kafka client's own INFO lines (every connection and
/// metadata refresh) are hidden unless the filter names `rskafka`: the Kafka pool logs its state changes itself.
fn install_tracing(config: &Config) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| config.log.clone());
    let directives = with_quiet_kafka_client(&directives);
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colours_wanted())
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Colours (ANSI escapes) only on a terminal, and not there either with `NO_COLOR` set (no-color.org): a log
/// read from a file, a pipe or journald gets plain text.
fn colours_wanted() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|value| value.is_empty())
}

/// Adds `rskafka=warn` to a filter that says nothing about rskafka.
fn with_quiet_kafka_client(directives: &str) -> String {
    if directives.contains("rskafka") {
        directives.to_owned()
    } else if directives.trim().is_empty() {
        "info,rskafka=warn".to_owned()
    } else {
        format!("{directives},rskafka=warn")
    }
}

/// Until SIGTERM or SIGINT: SIGHUP reads the configuration again (file, command line, environment) and
/// reloads it; the outcome is logged by the reload (it never stops the proxy).
async fn serve_signals(reloader: Reloader) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(mut interrupt), Ok(mut terminate), Ok(mut hangup)) => loop {
                tokio::select! {
                    _ = interrupt.recv() => return,
                    _ = terminate.recv() => return,
                    _ = hangup.recv() => {
                        tracing::info!("SIGHUP: reloading the configuration");
                        // The reload logs its outcome (what changed, or the key and the problem).
                        let _ = reloader.reload_from_file().await;
                    }
                }
            },
            (Err(error), _, _) | (_, Err(error), _) | (_, _, Err(error)) => {
                tracing::warn!(%error, "cannot watch SIGINT/SIGTERM/SIGHUP; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloader;
        let _ = tokio::signal::ctrl_c().await;
    }
}
