//! Manifest parsing (`ferry_render::parse_documents`) of any text as YAML and as JSON.
//! Properties: no panic; an error is one line; parsed manifests written with `to_yaml`
//! read back to the same objects (what `to_yaml` promises).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for file in ["fuzz.yaml", "fuzz.json"] {
        match ferry_render::parse_documents(text, file) {
            Ok(manifests) => {
                let yaml = ferry_render::to_yaml(&manifests);
                let back = ferry_render::parse_documents(&yaml, "back.yaml")
                    .unwrap_or_else(|e| panic!("to_yaml output does not parse: {e}\n{yaml}"));
                let objects = |ms: &[ferry_model::Manifest]| {
                    ms.iter().map(|m| m.object.clone()).collect::<Vec<_>>()
                };
                assert_eq!(objects(&back), objects(&manifests), "round trip of\n{yaml}");
            }
            Err(e) => {
                let message = e.to_string();
                assert!(!message.contains('\n'), "multi-line error: {message:?}");
            }
        }
    }
});
