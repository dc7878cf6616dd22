//! `ferry.yaml` parsing (`FerryFile::parse`) and app set expansion. Properties: no panic;
//! an error is one line; each app and app set template survives the JSON round trip that
//! app set expansion does; every app set expands for directory lists derived from its
//! own patterns, and what it generates is valid, unique and selected by the set.
#![no_main]

use std::path::Path;

use ferry_model::{FerryFile, appset};
use libfuzzer_sys::fuzz_target;

fn one_line(message: String) {
    assert!(!message.contains('\n'), "multi-line error: {message:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = match FerryFile::parse(text, Path::new("ferry.yaml")) {
        Ok(file) => file,
        Err(e) => return one_line(e.to_string()),
    };
    for app in &file.apps {
        let json = serde_json::to_value(&app.spec).expect("an AppSpec serializes");
        let back: ferry_model::AppSpec =
            serde_json::from_value(json).expect("an AppSpec reads back");
        assert_eq!(back, app.spec);
    }
    for set in &file.app_sets {
        // Directories: the patterns with their wildcards filled in several ways, plus a
        // few fixed ones (a hidden directory, a trailing slash, a duplicate).
        let mut dirs: Vec<String> = ["infra/dev", "infra/dev/", "infra/.git", "x", "a/b/c"]
            .iter()
            .map(|d| d.to_string())
            .collect();
        for pattern in std::iter::once(&set.directories).chain(&set.exclude) {
            for fill in ["x", "dev", "", "a-b", "x.y"] {
                dirs.push(pattern.replace(['*', '?'], fill));
                dirs.push(pattern.replacen('*', fill, 1).replace(['*', '?'], "q"));
            }
        }
        match appset::expand(set, &dirs) {
            Ok(apps) => {
                let mut names = std::collections::HashSet::new();
                for app in &apps {
                    assert!(names.insert(&app.name), "duplicate app {}", app.name);
                    assert!(app.spec.validate().is_ok(), "invalid app {app:?}");
                }
            }
            Err(e) => one_line(e.to_string()),
        }
    }
});
