//! `cargo xtask ci`: the checks CI runs, in order of cost: formatting, clippy, then `test`.

use std::process::ExitCode;

use xshell::cmd;

use crate::flags::{Ci, Test};
use crate::{project, Result};

/// Runs the command.
pub fn run(options: Ci) -> Result<ExitCode> {
    let sh = project::shell()?;
    let cargo = project::cargo();
    cmd!(sh, "{cargo} fmt --all --check").run()?;
    cmd!(
        sh,
        "{cargo} clippy --workspace --all-targets -- -D warnings"
    )
    .run()?;
    crate::test::run(&Test {
        cargo_args: options.cargo_args,
        keep_data: options.keep_data,
        no_kafka: options.no_kafka,
    })
}
