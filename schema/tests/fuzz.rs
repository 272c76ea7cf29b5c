//! Fuzzing the decoders that read untrusted bytes: client frames (from any
//! socket) and stream envelopes (from Redis). Property tests with proptest
//! plus a committed corpus (`schema/fuzz/corpus`) replayed with
//! deterministic mutations. A short run is part of the test suite; set
//! `PROPTEST_CASES` higher for a longer one.

use std::path::Path;

use proptest::prelude::*;
use schema::envelope::{self, LogEvent, Relay, ENVELOPE_VERSION};
use schema::frames::{parse_client_frame, ClientFrame, CustomerRef, Emoji, MessageKind, ReplyRef, Side, UserKind, UserRef};
use schema::ids::{valid_client_id, valid_id};
use schema::limits::MAX_TEXT_CHARS;

/// What every accepted client frame must satisfy.
fn check_frame(f: &ClientFrame) {
    let text_ok = |t: &str| t.chars().count() <= MAX_TEXT_CHARS && !t.trim().is_empty();
    match f {
        ClientFrame::Send { conversation, client_id, text, reply_to, attachments } => {
            // Text may be empty only when the message carries attachments.
            let text_or_files = text_ok(text) || (text.is_empty() && !attachments.is_empty());
            assert!(valid_id(conversation) && valid_client_id(client_id) && text_or_files);
            assert!(attachments.len() <= schema::limits::MAX_ATTACHMENTS);
            assert_ne!(*reply_to, Some(0));
        }
        ClientFrame::Edit { conversation, seq, text } => assert!(valid_id(conversation) && *seq > 0 && text_ok(text)),
        ClientFrame::Delete { conversation, seq }
        | ClientFrame::Delivered { conversation, seq }
        | ClientFrame::Seen { conversation, seq }
        | ClientFrame::React { conversation, seq, .. } => assert!(valid_id(conversation) && *seq > 0),
        ClientFrame::Typing { conversation } | ClientFrame::Watch { conversation, .. } | ClientFrame::Unwatch { conversation } => {
            assert!(valid_id(conversation))
        }
        ClientFrame::Resume { positions, .. } => assert!(positions.iter().all(|(c, _)| valid_id(c))),
        ClientFrame::Ping => {}
    }
}

fn decode_all(bytes: &[u8]) {
    if let Ok((_, f)) = parse_client_frame(bytes) {
        check_frame(&f);
    }
    let _ = envelope::decode::<LogEvent>(bytes);
    let _ = envelope::decode::<Relay>(bytes);
}

/// Deterministic mutations: truncations, bit flips, byte insertions.
fn mutations(seed: &[u8]) -> Vec<Vec<u8>> {
    let mut out = vec![];
    for cut in [0, 1, seed.len() / 2, seed.len().saturating_sub(1)] {
        out.push(seed[..cut.min(seed.len())].to_vec());
    }
    for i in (0..seed.len()).step_by(3) {
        for bit in [0x01u8, 0x20, 0x80] {
            let mut m = seed.to_vec();
            m[i] ^= bit;
            out.push(m);
        }
        let mut m = seed.to_vec();
        m.insert(i, b'"');
        out.push(m);
        let mut m = seed.to_vec();
        m.insert(i, 0xff);
        out.push(m);
    }
    out
}

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(dir);
    let mut v: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| std::fs::read(e.unwrap().path()).unwrap()).collect();
    assert!(!v.is_empty(), "empty corpus at {}", root.display());
    v.sort();
    v
}

#[test]
fn client_corpus_and_mutations_never_panic() {
    let seeds = corpus("client");
    let mut accepted = 0;
    for seed in &seeds {
        if parse_client_frame(seed).is_ok() {
            accepted += 1;
        }
        for m in mutations(seed) {
            decode_all(&m);
        }
    }
    // The corpus holds valid frames of every type, and some invalid ones.
    assert!(accepted >= 10, "only {accepted} corpus frames parse");
}

#[test]
fn envelope_corpus_and_mutations_never_panic() {
    for seed in corpus("envelope") {
        assert_eq!(seed[0], ENVELOPE_VERSION);
        assert!(envelope::decode::<LogEvent>(&seed).is_ok() || envelope::decode::<Relay>(&seed).is_ok(), "corpus entry no longer decodes");
        for m in mutations(&seed) {
            decode_all(&m);
        }
    }
}

/// Writes the envelope corpus from representative values (run once with
/// `REGENERATE_CORPUS=1`; the files are committed).
#[test]
fn envelope_corpus_is_current() {
    let user = UserRef { kind: UserKind::Customer, id: "alice".into(), username: "alice".into() };
    let samples: Vec<(&str, Vec<u8>)> = vec![
        (
            "message.bin",
            envelope::encode(&LogEvent::Message {
                conversation: "alice".into(),
                customer: CustomerRef { id: "alice".into(), username: "alice".into(), avatar_url: None },
                seq: 1,
                ts: 1_700_000_000_000,
                kind: MessageKind::Customer,
                author: Some(user.clone()),
                text: "hello 😀".into(),
                reply_to: Some(ReplyRef { seq: 1, excerpt: "x".into() }),
                client_id: Some("0f8fad5b-d9cb-469f-a165-70867728950e".into()),
                order_json: None,
                attachments: Vec::new(),
            }),
        ),
        ("edit.bin", envelope::encode(&LogEvent::Edit { conversation: "alice".into(), pos: 3, seq: 1, text: "e".into(), edited_at: 5, by: user.clone() })),
        ("react.bin", envelope::encode(&LogEvent::React { conversation: "a".into(), pos: 4, seq: 1, emoji: Emoji::Fire, on: true, by: user.clone(), ts: 6 })),
        ("read.bin", envelope::encode(&LogEvent::Read { conversation: "a".into(), side: Side::Staff, delivered: 4, seen: 4, ts: 7 })),
        ("relay.bin", envelope::encode(&Relay { audience: envelope::Audience::Both, conversation: Some("a".into()), pos: 4, frame: "{\"type\":\"pong\"}".into() })),
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/envelope");
    for (name, bytes) in samples {
        let path = root.join(name);
        if std::env::var_os("REGENERATE_CORPUS").is_some() {
            std::fs::write(&path, &bytes).unwrap();
        }
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{name}: the envelope encoding changed; bump ENVELOPE_VERSION or regenerate");
    }
}

fn id() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_.-]{1,64}"
}

fn user() -> impl Strategy<Value = UserRef> {
    (any::<bool>(), id(), "\\PC{0,20}").prop_map(|(agent, id, username)| UserRef {
        kind: if agent { UserKind::Agent } else { UserKind::Customer },
        id,
        username,
    })
}

fn log_event() -> impl Strategy<Value = LogEvent> {
    prop_oneof![
        (id(), any::<u64>(), any::<i64>(), "\\PC{0,200}", proptest::option::of(user())).prop_map(|(c, seq, ts, text, author)| LogEvent::Message {
            conversation: c.clone(),
            customer: CustomerRef { id: c, username: "u".into(), avatar_url: None },
            seq,
            ts,
            kind: MessageKind::Staff,
            author,
            text,
            reply_to: None,
            client_id: None,
            order_json: None,
            attachments: Vec::new(),
        }),
        (id(), any::<u64>(), any::<u64>(), "\\PC{0,50}", user()).prop_map(|(c, pos, seq, text, by)| LogEvent::Edit { conversation: c, pos, seq, text, edited_at: 1, by }),
        (id(), any::<u64>(), any::<bool>(), user()).prop_map(|(c, pos, on, by)| LogEvent::React { conversation: c, pos, seq: 1, emoji: Emoji::Heart, on, by, ts: 2 }),
        (id(), any::<u64>(), any::<u64>()).prop_map(|(c, d, s)| LogEvent::Read { conversation: c, side: Side::Customer, delivered: d, seen: s, ts: 3 }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
        let mut v = vec![ENVELOPE_VERSION];
        v.extend_from_slice(&bytes);
        decode_all(&v);
    }

    #[test]
    fn json_shaped_frames_are_validated(
        ty in prop_oneof![
            proptest::sample::select(vec!["send", "edit", "delete", "react", "typing", "delivered", "seen", "resume", "ping"]).prop_map(String::from),
            "[a-z]{0,8}",
        ],
        conv in proptest::option::of(prop_oneof![id(), "\\PC{0,80}"]),
        text in proptest::option::of("\\PC{0,50}"),
        seq in proptest::option::of(any::<u64>()),
        emoji in proptest::option::of(prop_oneof![Just("fire".to_string()), "[a-z_]{0,10}"]),
        client_id in proptest::option::of(prop_oneof![Just("0f8fad5b-d9cb-469f-a165-70867728950e".to_string()), "[0-9a-f-]{0,40}"]),
    ) {
        let mut o = serde_json::Map::new();
        o.insert("type".into(), ty.into());
        if let Some(c) = conv { o.insert("conversation".into(), c.into()); }
        if let Some(t) = text { o.insert("text".into(), t.into()); }
        if let Some(s) = seq { o.insert("seq".into(), s.into()); }
        if let Some(e) = emoji { o.insert("emoji".into(), e.into()); }
        if let Some(c) = client_id { o.insert("client_id".into(), c.into()); }
        o.insert("on".into(), true.into());
        let bytes = serde_json::to_vec(&serde_json::Value::Object(o)).unwrap();
        match parse_client_frame(&bytes) {
            Ok((_, f)) => check_frame(&f),
            Err((_, e)) => prop_assert!(!e.message.is_empty()),
        }
    }

    #[test]
    fn envelopes_round_trip(ev in log_event()) {
        let bytes = envelope::encode(&ev);
        prop_assert_eq!(envelope::decode::<LogEvent>(&bytes).unwrap(), ev);
        // Any truncation is an error, never a panic or a different value.
        for cut in 1..bytes.len() {
            prop_assert!(envelope::decode::<LogEvent>(&bytes[..cut]).is_err());
        }
    }
}
