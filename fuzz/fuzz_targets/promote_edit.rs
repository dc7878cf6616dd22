//! The promote line editor (`ferry_plan::edit`). The input is up to three parts separated
//! by NUL bytes: the file promoted from, the file promoted to, and a dotted values key
//! (default `image.tag`). Both edits run: Kustomize `images:` (read from the first,
//! set in the second) and the Helm values key. Properties: no panic; an accepted edit
//! leaves the text unchanged when it reports no change, reads back to what was copied,
//! and is idempotent (editing its result again changes nothing).
#![no_main]

use ferry_plan::edit;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.splitn(3, '\0');
    let from = parts.next().unwrap_or_default();
    let to = parts.next().unwrap_or_default();
    let key = parts
        .next()
        .filter(|k| !k.is_empty())
        .unwrap_or("image.tag");

    if let Ok(token) = edit::read_value(from, key)
        && let Ok(result) = edit::set_value(to, key, &token)
    {
        if result.changes.is_empty() {
            assert_eq!(result.text, to);
        }
        let again = edit::set_value(&result.text, key, &token)
            .unwrap_or_else(|e| panic!("second edit failed: {e}\n{}", result.text));
        assert!(
            again.changes.is_empty(),
            "not idempotent: {:?}",
            again.changes
        );
        edit::read_value(&result.text, key)
            .unwrap_or_else(|e| panic!("edited key unreadable: {e}\n{}", result.text));
    }

    if let Ok(images) = edit::read_images(from)
        && let Ok(result) = edit::set_images(to, &images)
    {
        if result.changes.is_empty() {
            assert_eq!(result.text, to);
        }
        let again = edit::set_images(&result.text, &images)
            .unwrap_or_else(|e| panic!("second edit failed: {e}\n{}", result.text));
        assert!(
            again.changes.is_empty(),
            "not idempotent: {:?}",
            again.changes
        );
        assert_eq!(again.text, result.text);
        // Entries of `to` the editor cannot read (anchors, flow style) stay as they were.
        if edit::read_images(to).is_err() {
            return;
        }
        let written = edit::read_images(&result.text)
            .unwrap_or_else(|e| panic!("edited file unreadable: {e}\n{}", result.text));
        // An image without fields selects what the base does, as an absent entry does.
        for image in images.iter().filter(|i| !i.fields.is_empty()) {
            assert!(
                written.iter().any(|w| w.name == image.name),
                "{} missing in\n{}",
                image.name,
                result.text
            );
        }
    }
});
