//! Printing ChangeSets and progress: colours and a live bar on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;

use anyhow::Result;
use ferry_engine::diff::colorize;
use ferry_engine::progress::{Event, Progress};
use ferry_model::{Action, ChangeSet, RunResult};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::Output;

/// Whether stdout gets ANSI colours.
fn color() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// A ChangeSet as the CLI prints it.
pub struct ChangeSetView<'a>(pub &'a ChangeSet);

impl ChangeSetView<'_> {
    /// Prints each changed object with its diff and a summary line (or the JSON ChangeSet).
    pub fn print(&self, out: Output) -> Result<()> {
        if out == Output::Json {
            outln!("{}", serde_json::to_string_pretty(self.0)?);
            return Ok(());
        }
        let color = color();
        for change in &self.0.changes {
            if change.action == Action::Unchanged {
                continue;
            }
            let mut line = format!("{} {}", symbol(change.action), change.subject);
            if let Some(reason) = &change.reason {
                line.push_str(&format!(" ({reason})"));
            }
            outln!("{line}");
            if !change.diff.is_empty() {
                let diff = if color {
                    colorize(&change.diff)
                } else {
                    change.diff.clone()
                };
                out!("{diff}");
                if !diff.ends_with('\n') {
                    outln!();
                }
            }
        }
        for wave in &self.0.waves {
            let mut line = format!("wave {}: {} object(s)", wave.wave, wave.objects);
            if wave.result != RunResult::Pending {
                line.push_str(&format!(" {}", result(wave.result, wave.duration_ms)));
            }
            if let Some(message) = &wave.message {
                line.push_str(&format!(": {message}"));
            }
            outln!("{line}");
        }
        for hook in &self.0.hooks {
            let mut line = format!("hook {} {} (wave {})", hook.phase, hook.subject, hook.wave);
            match hook.result {
                RunResult::Pending => line.push_str(": would run"),
                r => line.push_str(&format!(": {}", result(r, hook.duration_ms))),
            }
            if let Some(message) = &hook.message {
                line.push_str(&format!(": {message}"));
            }
            outln!("{line}");
        }
        let summary = self.0.summary();
        if self.0.in_sync() {
            outln!("{}: in sync ({summary})", self.0.app);
        } else {
            outln!("{}: {summary}", self.0.app);
        }
        Ok(())
    }
}

/// A hook's or a wave's result with its duration, e.g. `succeeded in 1.2 s`.
fn result(result: RunResult, duration_ms: Option<u64>) -> String {
    let word = match result {
        RunResult::Pending => "not run",
        RunResult::Succeeded => "succeeded",
        RunResult::Failed => "failed",
    };
    match duration_ms {
        Some(ms) => format!("{word} in {:.1} s", ms as f64 / 1000.0),
        None => word.to_string(),
    }
}

fn symbol(action: Action) -> &'static str {
    match action {
        Action::Create => "+ create",
        Action::Update => "~ update",
        Action::Recreate => "! recreate",
        Action::Unchanged => "= unchanged",
        Action::Prune => "- prune",
        Action::Orphan => "? keep",
    }
}

/// Progress on stderr: a live bar for the health wait on a terminal, plain lines otherwise.
/// Silent with `--output json` except for the bar.
pub struct Printer {
    quiet: bool,
    bar: Option<ProgressBar>,
    last: Mutex<String>,
}

impl Printer {
    /// A printer for the output format.
    pub fn new(out: Output) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{spinner} waiting for health {pos}/{len} {wide_msg}")
                    .expect("static template"),
            );
            bar
        });
        Self {
            quiet: out == Output::Json,
            bar,
            last: Mutex::new(String::new()),
        }
    }

    /// Prints one line of narration.
    pub fn line(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) if !bar.is_hidden() && bar.length() != Some(0) => bar.println(text),
            _ => eprintln!("{text}"),
        }
    }

    /// Clears the live bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for Printer {
    fn event(&self, event: Event) {
        match event {
            Event::Phase(text) => self.line(&text),
            Event::Applied { subject, action } => {
                self.line(&format!("  {} {subject}", symbol(action)))
            }
            Event::Pruned(subject) => self.line(&format!("  - pruned {subject}")),
            Event::Health {
                ready,
                total,
                pending,
            } => {
                let first = pending
                    .first()
                    .map(|(s, h)| format!("{s}: {}", h.message))
                    .unwrap_or_default();
                if let Some(bar) = &self.bar {
                    bar.set_length(total as u64);
                    bar.set_position(ready as u64);
                    bar.set_message(first);
                    bar.tick();
                } else {
                    let text = format!("health: {ready}/{total} ready {first}");
                    let mut last = self.last.lock().expect("printer lock");
                    if *last != text {
                        self.line(text.trim_end());
                        *last = text;
                    }
                }
            }
        }
    }
}
