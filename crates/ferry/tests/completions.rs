//! `ferry completion <shell>` and `ferry man`: the bash script completes ferry's real
//! subcommands and flags when bash runs it, every shell's script names them, and the man
//! pages are roff that `man` renders.

use std::path::Path;
use std::process::{Command, Output};

fn ferry(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .expect("running ferry");
    assert!(
        out.status.success(),
        "ferry {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(ferry(args).stdout).expect("UTF-8")
}

/// What bash's programmable completion offers for the words of `line` (the last word
/// being completed), with the script `ferry completion bash` printed.
fn bash_complete(script: &Path, line: &[&str]) -> Vec<String> {
    let words = line
        .iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source '{}'\nCOMP_WORDS=({words})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         _ferry ferry '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        script.display(),
        line.len() - 1,
        line.join(" "),
        line[line.len() - 1],
        line[line.len().saturating_sub(2)],
    );
    let out = Command::new("bash")
        .args(["--noprofile", "--norc", "-c", &program])
        .output()
        .expect("running bash");
    assert!(
        out.status.success(),
        "bash completion failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn bash_completes_subcommands_flags_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("ferry.bash");
    std::fs::write(&script, stdout(&["completion", "bash"])).unwrap();

    let subcommands = bash_complete(&script, &["ferry", "ap"]);
    assert_eq!(subcommands, ["apply", "apps"], "completing `ferry ap`");
    let flags = bash_complete(&script, &["ferry", "apply", "--no-"]);
    assert_eq!(
        flags,
        ["--no-wait", "--no-prune"],
        "completing `ferry apply --no-`"
    );
    let shells = bash_complete(&script, &["ferry", "completion", ""]);
    for shell in ["bash", "zsh", "fish", "powershell"] {
        assert!(shells.contains(&shell.to_string()), "{shells:?}");
    }
}

#[test]
fn every_shell_gets_a_script_naming_the_subcommands() {
    for (shell, marker) in [
        ("bash", "complete -F _ferry"),
        ("zsh", "#compdef ferry"),
        ("fish", "complete -c ferry"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let script = stdout(&["completion", shell]);
        assert!(script.contains(marker), "{shell}: no {marker:?}");
        for sub in [
            "apply",
            "diff",
            "agent",
            "install",
            "rollback",
            "completion",
            "man",
        ] {
            assert!(script.contains(sub), "{shell}: {sub} is not completed");
        }
        assert!(
            script.contains("--revision"),
            "{shell}: flags are not completed"
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["completion", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad input");
}

/// Renders a roff page with `man` as plain text.
fn render_man(page: &Path) -> String {
    let out = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .env("LANG", "C.UTF-8")
        .output()
        .expect("running man (Debian's man-db)");
    assert!(
        out.status.success(),
        "man -l {} failed: {}",
        page.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn man_pages_render() {
    let page = stdout(&["man"]);
    assert!(page.contains("\n.TH ferry 1 "), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("stdout.1");
    std::fs::write(&main, &page).unwrap();
    let text = render_man(&main);
    assert!(
        text.contains("GitOps continuous delivery for Kubernetes"),
        "{text}"
    );
    for sub in ["apply", "diff", "agent", "completion"] {
        assert!(
            text.contains(&format!("ferry-{sub}(1)")),
            "{sub} missing in\n{text}"
        );
    }

    let pages = dir.path().join("man");
    ferry(&["man", "--dir", pages.to_str().unwrap()]);
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(names.contains(&"ferry.1".to_string()), "{names:?}");
    assert!(names.contains(&"ferry-apply.1".to_string()), "{names:?}");
    assert_eq!(
        std::fs::read_to_string(pages.join("ferry.1")).unwrap(),
        page,
        "`ferry man` prints the ferry.1 that --dir writes"
    );
    let apply = render_man(&pages.join("ferry-apply.1"));
    for flag in [
        "--revision",
        "--force",
        "--no-wait",
        "--timeout",
        "--no-prune",
        "--all",
    ] {
        assert!(
            apply.contains(flag),
            "ferry-apply(1) lacks {flag}:\n{apply}"
        );
    }
}
