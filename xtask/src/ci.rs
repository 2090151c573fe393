//! `cargo xtask ci`: the checks CI runs, in order of cost: formatting, clippy, then `test`.

use std::process::ExitCode;

use crate::flags::TestOptions;
use crate::{project, shell, Result};

/// Runs the command.
pub fn run(options: &TestOptions) -> Result<ExitCode> {
    shell::run(project::cargo().args(["fmt", "--all", "--check"]))?;
    shell::run(project::cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    crate::test::run(options)
}
