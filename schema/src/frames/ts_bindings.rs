//! The console's TypeScript frame types, generated from this module's types
//! with ts-rs (a dev-dependency: the servers never build it) and checked in
//! under `web/src/lib/generated/`. The test fails when the checked-in files
//! differ from what the types generate; regenerate them with
//!
//! ```text
//! UPDATE_TS_BINDINGS=1 cargo test -p schema ts_bindings
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Serializer;
use ts_rs::{Config, TS};

use super::*;

const REGENERATE: &str = "UPDATE_TS_BINDINGS=1 cargo test -p schema ts_bindings";

/// `ClientFrame::Resume` holds sorted pairs; the wire has an object.
pub(super) fn positions_as_map<S: Serializer>(positions: &[(String, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(positions.iter().map(|(c, p)| (c, p)))
}

fn checked_in_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/src/lib/generated")
}

/// Writes every generated file into `dir`: one file per type (ts-rs), plus an index.
fn generate(dir: &Path) {
    // JSON numbers: ids and positions stay far below 2^53, and JSON.parse gives numbers.
    let cfg = Config::new().with_large_int("number").with_out_dir(dir);
    ClientFrame::export_all(&cfg).expect("export ClientFrame");
    ServerFrame::export_all(&cfg).expect("export ServerFrame");
    let mut names: Vec<String> = files(dir).into_keys().filter_map(|f| f.strip_suffix(".ts").map(str::to_string)).collect();
    names.sort();
    let mut index = format!(
        "// Generated from schema/src/frames.rs (ts-rs). Do not edit: regenerate with\n//   {REGENERATE}\n\n"
    );
    for n in names.iter().filter(|n| *n != "index" && !n.contains('/')) {
        index.push_str(&format!("export type {{ {n} }} from './{n}';\n"));
    }
    fs::write(dir.join("index.ts"), index).expect("write index.ts");
}

/// Path relative to `dir` -> contents, for every `.ts` file under `dir`.
fn files(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let Ok(entries) = fs::read_dir(dir) else { return };
        for e in entries.filter_map(Result::ok) {
            let path = e.path();
            if path.is_dir() {
                walk(root, &path, out);
            } else if path.extension().is_some_and(|x| x == "ts") {
                let rel = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
                out.insert(rel, fs::read_to_string(&path).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

#[test]
fn ts_bindings_match_the_checked_in_files() {
    let tmp = std::env::temp_dir().join(format!("schema-ts-bindings-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp).unwrap();
    generate(&tmp);
    let fresh = files(&tmp);
    let _ = fs::remove_dir_all(&tmp);
    let dir = checked_in_dir();

    if std::env::var_os("UPDATE_TS_BINDINGS").is_some_and(|v| !v.is_empty() && v != "0") {
        fs::create_dir_all(&dir).unwrap();
        for stale in files(&dir).keys().filter(|f| !fresh.contains_key(*f)) {
            fs::remove_file(dir.join(stale)).unwrap();
        }
        for (name, text) in &fresh {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        return;
    }

    let held = files(&dir);
    let mut problems = Vec::new();
    for (name, text) in &fresh {
        match held.get(name) {
            None => problems.push(format!("missing: {name}")),
            Some(h) if h != text => problems.push(format!("differs: {name}\n--- checked in\n{h}\n--- generated\n{text}")),
            Some(_) => {}
        }
    }
    for name in held.keys().filter(|f| !fresh.contains_key(*f)) {
        problems.push(format!("not generated any more: {name}"));
    }
    assert!(
        problems.is_empty(),
        "web/src/lib/generated/ is out of date with schema/src/frames.rs:\n{}\n\nRegenerate with:\n  {REGENERATE}\n",
        problems.join("\n")
    );
}

/// The generated `ClientFrame` type describes what the servers parse: each
/// variant, serialised with the shape the type is generated from, parses back
/// to itself.
#[test]
fn client_frames_round_trip() {
    let c = || "c1".to_string();
    let frames = [
        ClientFrame::Send {
            conversation: c(),
            client_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            text: "hi".into(),
            reply_to: Some(3),
            attachments: vec![],
        },
        ClientFrame::Send {
            conversation: c(),
            client_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            text: "hi".into(),
            reply_to: None,
            attachments: vec![],
        },
        ClientFrame::Send {
            conversation: c(),
            client_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            text: String::new(),
            reply_to: None,
            attachments: vec!["0123456789abcdef0123456789abcdef".into()],
        },
        ClientFrame::Edit { conversation: c(), seq: 2, text: "x".into() },
        ClientFrame::Delete { conversation: c(), seq: 2 },
        ClientFrame::React { conversation: c(), seq: 2, emoji: Emoji::ThumbsUp, on: true },
        ClientFrame::Typing { conversation: c() },
        ClientFrame::Delivered { conversation: c(), seq: 4 },
        ClientFrame::Seen { conversation: c(), seq: 4 },
        ClientFrame::Resume { positions: vec![("a".into(), 1), ("b".into(), 7)], epoch: Some("e1".into()) },
        ClientFrame::Resume { positions: vec![], epoch: None },
        ClientFrame::Watch { conversation: c(), after: 5 },
        ClientFrame::Unwatch { conversation: c() },
        ClientFrame::Ping,
    ];
    for f in frames {
        let json = serde_json::to_string(&f).unwrap();
        let (_, back) = parse_client_frame(json.as_bytes()).unwrap_or_else(|(_, e)| panic!("{json}: {}", e.message));
        assert_eq!(back, f, "{json}");
    }
}
