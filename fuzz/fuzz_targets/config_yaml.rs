//! The YAML app loader (docs/spec.md §11) on arbitrary YAML text and `file://` files: never panics,
//! and a failed load reports at least one error.
//!
//! Input: `app.yaml` text, then optionally `\0name\0content` pairs for files next to it (so
//! seeds are plain YAML files).

#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use wsrelay_config::{AppConfig, LoadOptions, MemoryFiles};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut parts = text.split('\0');
    let yaml = parts.next().unwrap_or_default();
    let base = Path::new("app");
    let mut files = MemoryFiles::new();
    let mut sources = vec![(PathBuf::from("app.yaml"), yaml.to_owned())];
    while let (Some(name), Some(content)) = (parts.next(), parts.next()) {
        if name.ends_with(".yaml") {
            sources.push((PathBuf::from(name), content.to_owned()));
        } else {
            files.insert(base.join(name), content);
        }
    }
    let opts = LoadOptions::new()
        .with_middleware(["websocket_relay", "cors"])
        .with_lua_checker(|_chunk, source| {
            if source.contains("syntax error") {
                Err("syntax error".into())
            } else {
                Ok(())
            }
        });
    if let Err(errors) = AppConfig::from_sources_with(sources, base, &files, &opts) {
        assert!(
            !errors.is_empty(),
            "a failed load names at least one problem"
        );
        let _ = errors.to_string();
    }
});
