//! The `ferry` command: parses flags, dispatches to the library crates and maps
//! results to exit codes (0 success / in sync, 1 changes pending or unhealthy, 2 error).

/// `println!` that exits quietly when stdout is a closed pipe (`ferry render | head`).
/// SIGPIPE stays ignored, as network code needs, so a broken pipe is an error to handle.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            crate::stdout_failed(e);
        }
    }};
}

/// `print!` with the same closed-pipe handling as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = write!(std::io::stdout().lock(), $($arg)*) {
            crate::stdout_failed(e);
        }
    }};
}

mod cli;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let json_logs = matches!(&cli.command, cli::Command::Agent(a) if a.log_json);
    let verbose = match cli.command {
        cli::Command::Agent(_) => cli.global.verbose.max(1),
        _ => cli.global.verbose,
    };
    cli::init_tracing(verbose, json_logs);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(code) => ExitCode::from(code as u8),
        Err(err) => {
            eprintln!("error: {}", one_line(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes on one line. A cause whose text an earlier message already
/// contains is skipped: many errors print their source in their own message.
fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}

/// Ends the process after a failed write to stdout: quietly for a closed pipe.
fn stdout_failed(err: std::io::Error) -> ! {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    eprintln!("error: cannot write to stdout: {err}");
    std::process::exit(2);
}
