//! `ferry completion` and `ferry man`: shell completions and man pages, generated from
//! the command-line definition so they always match this build's flags.

use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;

use crate::cli::{Cli, Shell};

/// Prints the completion script for `shell`.
pub fn completion(shell: Shell) -> Result<i32> {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
        Shell::Powershell => clap_complete::Shell::PowerShell,
    };
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut Cli::command(), "ferry", &mut script);
    write_stdout(&script)
}

/// Prints the man page `ferry(1)` in roff; with `dir`, writes it and one page per
/// subcommand (`ferry-apply.1`, …) there instead.
pub fn man(dir: Option<&Path>) -> Result<i32> {
    let mut command = Cli::command();
    // What `generate_to` renders: the built command, with its `help` subcommand.
    command.build();
    let Some(dir) = dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        return write_stdout(&page);
    };
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    clap_mangen::generate_to(command, dir)
        .with_context(|| format!("cannot write the man pages to {}", dir.display()))?;
    Ok(0)
}

fn write_stdout(bytes: &[u8]) -> Result<i32> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(0),
        other => other.context("cannot write to stdout").map(|()| 0),
    }
}
