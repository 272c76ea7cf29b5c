//! One suite, run against SQLite (temp file) and PostgreSQL (fresh database
//! per test): every case below is instantiated for both by `both!`.

mod common;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use schema::envelope::LogEvent;
use schema::frames::{CustomerRef, Emoji, MessageKind, ReplyRef, Side, UserKind, UserRef};
use store::{Backend, Store};

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let db = crate::common::sqlite().await;
                assert_eq!(db.store.backend(), store::Backend::Sqlite);
                crate::$name(&db.store).await;
            }
            #[tokio::test]
            async fn postgres() {
                let db = crate::common::postgres().await;
                assert_eq!(db.store.backend(), store::Backend::Postgres);
                crate::$name(&db.store).await;
            }
        }
    )*};
}

both!(
    idempotent_persist,
    edits_deletes_reactions,
    out_of_order_replays,
    unread_counting,
    pages_and_has_more,
    agent_login,
    customers_and_listing,
    events_before_their_message,
    large_batch_is_chunked,
    odd_text,
);

// ---------------------------------------------------------------- event helpers

fn customer_ref(conv: &str) -> CustomerRef {
    CustomerRef { id: conv.into(), username: format!("user_{conv}"), avatar_url: Some(format!("https://a/{conv}.png")) }
}

fn cust_user(conv: &str) -> UserRef {
    UserRef { kind: UserKind::Customer, id: conv.into(), username: format!("user_{conv}") }
}

fn agent_user() -> UserRef {
    UserRef { kind: UserKind::Agent, id: "a-1".into(), username: "alice".into() }
}

fn msg(conv: &str, seq: u64, kind: MessageKind, text: &str) -> LogEvent {
    let author = match kind {
        MessageKind::Customer => Some(cust_user(conv)),
        MessageKind::Staff => Some(agent_user()),
        _ => None,
    };
    LogEvent::Message {
        conversation: conv.into(),
        customer: customer_ref(conv),
        seq,
        ts: 1_000 + seq as i64,
        kind,
        author,
        text: text.into(),
        reply_to: None,
        client_id: Some(format!("00000000-0000-0000-0000-{seq:012}")),
        order_json: None,
        attachments: Vec::new(),
    }
}

fn cmsg(conv: &str, seq: u64) -> LogEvent {
    msg(conv, seq, MessageKind::Customer, &format!("hello {seq}"))
}

fn edit(conv: &str, pos: u64, seq: u64, text: &str, edited_at: i64) -> LogEvent {
    LogEvent::Edit { conversation: conv.into(), pos, seq, text: text.into(), edited_at, by: cust_user(conv) }
}

fn delete(conv: &str, pos: u64, seq: u64) -> LogEvent {
    LogEvent::Delete { conversation: conv.into(), pos, seq, ts: 5_000 + pos as i64, by: cust_user(conv) }
}

fn react(conv: &str, pos: u64, seq: u64, emoji: Emoji, on: bool, by: UserRef) -> LogEvent {
    LogEvent::React { conversation: conv.into(), pos, seq, emoji, on, by, ts: 6_000 + pos as i64 }
}

fn read(conv: &str, side: Side, delivered: u64, seen: u64) -> LogEvent {
    LogEvent::Read { conversation: conv.into(), side, delivered, seen, ts: 7_000 }
}

async fn page_all(store: &Store, conv: &str) -> Vec<schema::frames::Message> {
    store.messages_page(conv, None, 100).await.expect("page").0
}

// ---------------------------------------------------------------- cases

async fn idempotent_persist(store: &Store) {
    let batch = vec![
        cmsg("c1", 1),
        msg("c1", 2, MessageKind::Staff, "hi there"),
        cmsg("c1", 3),
        cmsg("c2", 1),
        // The same event twice inside one batch.
        cmsg("c2", 1),
    ];
    let first = store.persist(&batch).await.expect("persist");
    assert_eq!(first.inserted, 4);
    assert_eq!(first.conversations, vec!["c1".to_string(), "c2".to_string()]);
    let page1 = page_all(store, "c1").await;
    let state1 = store.conversation_state("c1").await.expect("state").expect("exists");

    let again = store.persist(&batch).await.expect("persist again");
    assert_eq!(again.inserted, 0, "a replayed batch inserts nothing");
    assert_eq!(again.conversations, first.conversations);
    assert_eq!(page_all(store, "c1").await, page1);
    assert_eq!(store.conversation_state("c1").await.expect("state").expect("exists"), state1);
    assert_eq!(store.message_count("c1").await.expect("count"), 3);
    assert_eq!(store.message_count("c2").await.expect("count"), 1);

    assert_eq!(state1.unread, 2);
    assert_eq!(state1.last_pos, 3);
    assert_eq!(state1.last_ts, 1_003);
    assert_eq!(state1.preview, "hello 3");
    assert_eq!(state1.customer, customer_ref("c1"));

    let m = &page1[1];
    assert_eq!(m.seq, 2);
    assert_eq!(m.kind, MessageKind::Staff);
    assert_eq!(m.author, Some(agent_user()));
    assert_eq!(m.text, "hi there");
    assert!(!m.deleted);
    assert_eq!(m.client_id.as_deref(), Some("00000000-0000-0000-0000-000000000002"));

    // persist_with_states returns what conversation_state reads.
    let (p, states) = store.persist_with_states(&[cmsg("c2", 2)]).await.expect("persist");
    assert_eq!(p.inserted, 1);
    assert_eq!(states.len(), 1);
    assert_eq!(Some(states[0].clone()), store.conversation_state("c2").await.expect("state"));
    assert_eq!(states[0].unread, 2);
    // A customer's receipt cannot change the chat-list row: no state for it
    // (the worker then writes no row); a staff receipt can (unread).
    let (_, states) = store.persist_with_states(&[read("c2", Side::Customer, 2, 2), cmsg("c1", 4)]).await.expect("persist");
    assert_eq!(states.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec!["c1"]);
    assert_eq!(store.conversation_state("c2").await.expect("state").expect("c2").customer_seen, 2, "the receipt itself is stored");
    let (_, states) = store.persist_with_states(&[read("c2", Side::Staff, 2, 2)]).await.expect("persist");
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].unread, 0);
    assert!(store.persist(&[]).await.expect("empty").conversations.is_empty());
}

async fn edits_deletes_reactions(store: &Store) {
    let c = "c1";
    store.persist(&[cmsg(c, 1), msg(c, 2, MessageKind::Staff, "staff says"), cmsg(c, 3)]).await.expect("persist");

    // Edit, then an older edit that must not win.
    store.persist(&[edit(c, 4, 1, "edited once", 2_000)]).await.expect("edit");
    store.persist(&[edit(c, 5, 1, "stale", 1_500)]).await.expect("stale edit");
    let p = page_all(store, c).await;
    assert_eq!(p[0].text, "edited once");
    assert_eq!(p[0].edited_at, Some(2_000));

    // Reactions: two people, a toggle off, and an out-of-date toggle.
    store
        .persist(&[
            react(c, 6, 2, Emoji::Heart, true, cust_user(c)),
            react(c, 7, 2, Emoji::Heart, true, agent_user()),
            react(c, 8, 2, Emoji::Fire, true, agent_user()),
            react(c, 9, 2, Emoji::Fire, false, agent_user()),
        ])
        .await
        .expect("react");
    store.persist(&[react(c, 8, 2, Emoji::Fire, true, agent_user())]).await.expect("older react");
    let p = page_all(store, c).await;
    assert_eq!(p[1].reactions.get("heart"), Some(&2));
    assert_eq!(p[1].reactions.get("fire"), None, "a later off beats an earlier on, whatever the arrival order");
    assert!(p[0].reactions.is_empty());

    // Delete the last message: the preview says so.
    store.persist(&[delete(c, 10, 3)]).await.expect("delete");
    // An edit of a deleted message does nothing.
    store.persist(&[edit(c, 11, 3, "resurrect", 9_999)]).await.expect("edit deleted");
    let p = page_all(store, c).await;
    assert_eq!(p.len(), 3, "deleted messages keep their seq");
    assert!(p[2].deleted);
    assert_eq!(p[2].text, "");
    let meta = store.message_meta(c, 3).await.expect("meta").expect("exists");
    assert!(meta.deleted);
    assert_eq!(meta.kind, MessageKind::Customer);
    assert_eq!(meta.excerpt, "");
    let meta = store.message_meta(c, 1).await.expect("meta").expect("exists");
    assert_eq!((meta.kind, meta.deleted, meta.excerpt.as_str()), (MessageKind::Customer, false, "edited once"));
    assert_eq!(store.message_meta(c, 99).await.expect("meta"), None);

    let st = store.conversation_state(c).await.expect("state").expect("exists");
    assert_eq!(st.preview, store::DELETED_PREVIEW);
    assert_eq!(st.last_ts, 1_003, "last_ts is the latest message's, deleted or not");
    assert_eq!(st.last_pos, 11);
    assert_eq!(store.max_pos(c).await.expect("max_pos"), 11);
    assert_eq!(st.unread, 1, "the deleted customer message no longer counts");

    // Everything deleted.
    store.persist(&[delete(c, 12, 1), delete(c, 13, 2)]).await.expect("delete all");
    let st = store.conversation_state(c).await.expect("state").expect("exists");
    assert_eq!(st.preview, store::DELETED_PREVIEW);
    assert_eq!(st.unread, 0);

    // Reply and order messages.
    let reply = LogEvent::Message {
        conversation: c.into(),
        customer: customer_ref(c),
        seq: 14,
        ts: 9_000,
        kind: MessageKind::Staff,
        author: Some(agent_user()),
        text: "answer".into(),
        reply_to: Some(ReplyRef { seq: 1, excerpt: "edited once".into() }),
        client_id: None,
        order_json: None,
        attachments: Vec::new(),
    };
    let order = LogEvent::Message {
        conversation: c.into(),
        customer: customer_ref(c),
        seq: 15,
        ts: 9_001,
        kind: MessageKind::Order,
        author: None,
        text: "Order #7 shipped".into(),
        reply_to: None,
        client_id: None,
        order_json: Some(r#"{"order_id":"7","status":"shipped"}"#.into()),
        attachments: Vec::new(),
    };
    store.persist(&[reply, order]).await.expect("persist");
    let p = page_all(store, c).await;
    let r = &p[3];
    assert_eq!(r.reply_to, Some(ReplyRef { seq: 1, excerpt: "edited once".into() }));
    let o = &p[4];
    assert_eq!(o.kind, MessageKind::Order);
    assert_eq!(o.author, None);
    assert_eq!(o.order.as_ref().and_then(|v| v.get("status")).and_then(|s| s.as_str()), Some("shipped"));
    let st = store.conversation_state(c).await.expect("state").expect("exists");
    assert_eq!(st.preview, "Order #7 shipped");
    assert_eq!(st.last_ts, 9_001);
}

/// A realistic history for one conversation: messages from both sides,
/// edits, deletes, reactions and receipts, each with its position.
fn history(conv: &str) -> Vec<LogEvent> {
    let mut ev = Vec::new();
    let mut pos = 0u64;
    let mut next = || {
        pos += 1;
        pos
    };
    for i in 0..6 {
        let s = next();
        ev.push(msg(conv, s, if i % 3 == 2 { MessageKind::Staff } else { MessageKind::Customer }, &format!("m{s}")));
    }
    let p = next();
    ev.push(edit(conv, p, 1, "first edit", 3_000));
    let p = next();
    ev.push(edit(conv, p, 1, "second edit", 3_001));
    let p = next();
    ev.push(edit(conv, p, 2, "edit then delete", 3_002));
    let p = next();
    ev.push(delete(conv, p, 2));
    let p = next();
    ev.push(react(conv, p, 3, Emoji::Sad, true, agent_user()));
    let p = next();
    ev.push(react(conv, p, 3, Emoji::Sad, false, agent_user()));
    let p = next();
    ev.push(react(conv, p, 3, Emoji::Sad, true, agent_user()));
    let p = next();
    ev.push(react(conv, p, 4, Emoji::ThumbsUp, true, cust_user(conv)));
    let p = next();
    ev.push(react(conv, p, 4, Emoji::ThumbsUp, false, cust_user(conv)));
    ev.push(read(conv, Side::Staff, 4, 2));
    ev.push(read(conv, Side::Staff, 5, 4));
    ev.push(read(conv, Side::Customer, 6, 6));
    let s = next();
    ev.push(cmsg(conv, s));
    let p = next();
    ev.push(delete(conv, p, s));
    let s = next();
    ev.push(cmsg(conv, s));
    ev
}

/// Pages and state with the conversation id blanked, to compare conversations.
async fn snapshot(store: &Store, conv: &str) -> (String, store::ConversationState) {
    let page = page_all(store, conv).await;
    let mut st = store.conversation_state(conv).await.expect("state").expect("exists");
    st.id = String::new();
    st.customer = customer_ref("x");
    let json = serde_json::to_string(&page).expect("json");
    (json.replace(&format!("\"{conv}\""), "\"X\"").replace(&format!("user_{conv}"), "user_X"), st)
}

async fn out_of_order_replays(store: &Store) {
    let reference = history("ref");
    store.persist(&reference).await.expect("in order");
    let expected = snapshot(store, "ref").await;
    assert_eq!(expected.1.last_pos, 18);
    // Customer messages 1, 2, 4, 5, 16, 18; 2 and 16 deleted; staff saw up to 4.
    assert_eq!(expected.1.unread, 2);
    assert_eq!(expected.1.staff_seen, 4);
    assert_eq!(expected.1.customer_seen, 6);

    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for round in 0..20 {
        let conv = format!("perm{round}");
        let mut events = history(&conv);
        // Duplicates, as at-least-once delivery produces them.
        let dups: Vec<LogEvent> = events.iter().filter(|_| rng.gen_bool(0.3)).cloned().collect();
        events.extend(dups);
        events.shuffle(&mut rng);
        // Random batch boundaries.
        let mut rest = &events[..];
        while !rest.is_empty() {
            let n = rng.gen_range(1..=rest.len().min(6));
            store.persist(&rest[..n]).await.expect("persist part");
            rest = &rest[n..];
        }
        assert_eq!(snapshot(store, &conv).await, expected, "permutation {round} diverged");
    }
}

async fn unread_counting(store: &Store) {
    let c = "u1";
    store.persist(&[cmsg(c, 1), cmsg(c, 2), msg(c, 3, MessageKind::Staff, "x"), cmsg(c, 4)]).await.expect("persist");
    let unread = |store: &Store| {
        let store = store.clone();
        async move { store.conversation_state(c).await.expect("state").expect("exists").unread }
    };
    assert_eq!(unread(store).await, 3, "staff messages are not unread");
    // Replays of the same messages never double count.
    store.persist(&[cmsg(c, 2), cmsg(c, 4)]).await.expect("replay");
    assert_eq!(unread(store).await, 3);
    store.persist(&[read(c, Side::Staff, 4, 2)]).await.expect("read");
    assert_eq!(unread(store).await, 1);
    // The customer's own receipts do not change staff's unread.
    store.persist(&[read(c, Side::Customer, 4, 4)]).await.expect("read");
    assert_eq!(unread(store).await, 1);
    // An older receipt arriving late does not lower staff_seen.
    store.persist(&[read(c, Side::Staff, 1, 1)]).await.expect("old read");
    assert_eq!(unread(store).await, 1);
    let st = store.conversation_state(c).await.expect("state").expect("exists");
    assert_eq!((st.staff_delivered, st.staff_seen, st.customer_delivered, st.customer_seen), (4, 2, 4, 4));
    store.persist(&[delete(c, 5, 4)]).await.expect("delete");
    assert_eq!(unread(store).await, 0);
    store.persist(&[cmsg(c, 6)]).await.expect("more");
    assert_eq!(unread(store).await, 1);
}

async fn pages_and_has_more(store: &Store) {
    let c = "p1";
    let events: Vec<_> = (1..=25).map(|s| cmsg(c, s)).collect();
    store.persist(&events).await.expect("persist");
    let seqs = |v: &[schema::frames::Message]| v.iter().map(|m| m.seq).collect::<Vec<_>>();

    let (p, more) = store.messages_page(c, None, 10).await.expect("page");
    assert_eq!(seqs(&p), (16..=25).collect::<Vec<_>>(), "latest page, oldest first");
    assert!(more);
    let (p, more) = store.messages_page(c, Some(16), 10).await.expect("page");
    assert_eq!(seqs(&p), (6..=15).collect::<Vec<_>>());
    assert!(more);
    let (p, more) = store.messages_page(c, Some(6), 10).await.expect("page");
    assert_eq!(seqs(&p), (1..=5).collect::<Vec<_>>());
    assert!(!more);
    let (p, more) = store.messages_page(c, Some(1), 10).await.expect("page");
    assert!(p.is_empty() && !more);
    let (p, more) = store.messages_page(c, Some(11), 10).await.expect("page");
    assert_eq!(seqs(&p), (1..=10).collect::<Vec<_>>());
    assert!(!more, "exactly a page left: no more");

    let (p, more) = store.messages_page(c, None, 0).await.expect("page");
    assert_eq!(seqs(&p), vec![25], "limit clamps up to 1");
    assert!(more);
    let (p, more) = store.messages_page(c, None, 10_000).await.expect("page");
    assert_eq!(p.len(), 25);
    assert!(!more);
    let (p, _) = store.messages_page("nobody", None, 10).await.expect("page");
    assert!(p.is_empty());

    let many: Vec<_> = (26..=160).map(|s| cmsg(c, s)).collect();
    store.persist(&many).await.expect("persist");
    let (p, more) = store.messages_page(c, None, 10_000).await.expect("page");
    assert_eq!(p.len(), schema::limits::MAX_PAGE, "limit clamps down to MAX_PAGE");
    assert!(more);
}

async fn agent_login(store: &Store) {
    let a = store.ensure_agent("alice", "Alice A.", "s3cret-pass").await.expect("ensure");
    assert_eq!(a.username, "alice");
    assert_eq!(a.display_name, "Alice A.");
    assert!(schema::ids::valid_id(&a.id), "agent ids are valid ids: {}", a.id);
    assert_eq!(store.verify_agent("alice", "s3cret-pass").await.expect("verify"), Some(a.clone()));
    assert_eq!(store.verify_agent("alice", "wrong").await.expect("verify"), None);
    assert_eq!(store.verify_agent("nobody", "s3cret-pass").await.expect("verify"), None);
    assert_eq!(store.agent(&a.id).await.expect("agent"), Some(a.clone()));
    assert_eq!(store.agent("a-missing").await.expect("agent"), None);

    // Ensuring again keeps the id, changes the password and display name.
    let b = store.ensure_agent("alice", "Alice B.", "new-pass").await.expect("ensure");
    assert_eq!(b.id, a.id);
    assert_eq!(b.display_name, "Alice B.");
    assert_eq!(store.verify_agent("alice", "s3cret-pass").await.expect("verify"), None);
    assert_eq!(store.verify_agent("alice", "new-pass").await.expect("verify"), Some(b));
    assert!(store.ensure_agent("bad name", "x", "y").await.is_err());

    // An unknown username costs about as much as a known one (a real hash is checked).
    let t = std::time::Instant::now();
    let _ = store.verify_agent("alice", "nope").await;
    let known = t.elapsed();
    let t = std::time::Instant::now();
    let _ = store.verify_agent("ghost", "nope").await;
    let unknown = t.elapsed();
    assert!(unknown * 4 > known, "unknown {unknown:?} vs known {known:?}");
}

async fn customers_and_listing(store: &Store) {
    let cu = store.upsert_customer("k1", "kim", None).await.expect("upsert");
    assert_eq!((cu.id.as_str(), cu.username.as_str(), cu.avatar_url.as_deref()), ("k1", "kim", None));
    let cu2 = store.upsert_customer("k1", "kimberly", Some("https://x/k.png")).await.expect("upsert");
    assert_eq!(cu2.username, "kimberly");
    assert_eq!(cu2.avatar_url.as_deref(), Some("https://x/k.png"));
    assert_eq!(store.customer("k1").await.expect("customer"), Some(cu2));
    assert_eq!(store.customer("k2").await.expect("customer"), None);

    // A message persisted later, but sent before the profile change, does not revert it.
    let mut old = cmsg("k1", 1);
    if let LogEvent::Message { ts, customer, .. } = &mut old {
        *ts = 5;
        customer.username = "kim".into();
    }
    store.persist(&[old]).await.expect("persist");
    assert_eq!(store.customer("k1").await.expect("customer").map(|c| c.username), Some("kimberly".into()));
    // A newer message carries the current profile.
    store.persist(&[cmsg("k3", 1)]).await.expect("persist");
    assert_eq!(store.customer("k3").await.expect("customer").map(|c| c.username), Some("user_k3".into()));

    let ids: Vec<String> = (0..7).map(|i| format!("L{i}")).collect();
    let events: Vec<_> = ids.iter().map(|id| cmsg(id, 1)).collect();
    store.persist(&events).await.expect("persist");
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.conversation_ids(after.as_deref(), 3).await.expect("ids");
        if page.is_empty() {
            break;
        }
        after = page.last().cloned();
        all.extend(page);
    }
    let mut expected = ids.clone();
    expected.extend(["k1".to_string(), "k3".to_string()]);
    expected.sort();
    assert_eq!(all, expected);
    let states = store.conversation_states(&["L1".into(), "nope".into(), "L0".into()]).await.expect("states");
    assert_eq!(states.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec!["L0", "L1"]);
    assert_eq!(store.conversation_state("nope").await.expect("state"), None);
    assert_eq!(store.max_pos("nope").await.expect("max_pos"), 0);
    assert_eq!(store.message_count("nope").await.expect("count"), 0);
    store.ping().await.expect("ping");
}

async fn events_before_their_message(store: &Store) {
    let c = "early";
    // A receipt, an edit, a delete and a reaction all arrive before any message.
    store.persist(&[read(c, Side::Staff, 1, 1)]).await.expect("read first");
    let st = store.conversation_state(c).await.expect("state").expect("exists");
    assert_eq!(st.customer.username, c, "unknown customer falls back to its id");
    assert_eq!(st.preview, "");
    assert_eq!(store.message_count(c).await.expect("count"), 0);
    store
        .persist(&[
            edit(c, 4, 2, "edited before arrival", 2_000),
            delete(c, 5, 3),
            react(c, 6, 2, Emoji::Laughing, true, agent_user()),
        ])
        .await
        .expect("early ops");
    assert!(page_all(store, c).await.is_empty(), "stubs are not messages");
    assert_eq!(store.message_meta(c, 2).await.expect("meta"), None);
    let p = store.persist(&[cmsg(c, 1), cmsg(c, 2), cmsg(c, 3)]).await.expect("messages");
    assert_eq!(p.inserted, 3);
    let page = page_all(store, c).await;
    assert_eq!(page.len(), 3);
    assert_eq!(page[1].text, "edited before arrival");
    assert_eq!(page[1].edited_at, Some(2_000));
    assert_eq!(page[1].kind, MessageKind::Customer);
    assert_eq!(page[1].reactions.get("laughing"), Some(&1));
    assert!(page[2].deleted);
    let st = store.conversation_state(c).await.expect("state").expect("exists");
    assert_eq!(st.customer.username, format!("user_{c}"));
    assert_eq!(st.unread, 1, "seq 2 only: 1 was seen, 3 is deleted");
    assert_eq!(st.preview, store::DELETED_PREVIEW, "the latest message (3) is deleted");
    assert_eq!(st.last_pos, 6);
}

async fn large_batch_is_chunked(store: &Store) {
    let mut events = Vec::new();
    for conv in 0..5 {
        for s in 1..=300u64 {
            events.push(cmsg(&format!("big{conv}"), s));
        }
    }
    for conv in 0..5 {
        events.push(read(&format!("big{conv}"), Side::Staff, 300, 100));
    }
    let p = store.persist(&events).await.expect("persist");
    assert_eq!(p.inserted, 1500);
    assert_eq!(p.conversations.len(), 5);
    let st = store.conversation_state("big3").await.expect("state").expect("exists");
    assert_eq!(st.unread, 200);
    assert_eq!(store.message_count("big3").await.expect("count"), 300);
    assert_eq!(store.persist(&events).await.expect("again").inserted, 0);
}

async fn odd_text(store: &Store) {
    let c = "odd";
    let long = "é".repeat(4000);
    store
        .persist(&[
            msg(c, 1, MessageKind::Customer, "nul\0inside"),
            msg(c, 2, MessageKind::Customer, "quote ' and $1 and ?"),
            msg(c, 3, MessageKind::Customer, &long),
        ])
        .await
        .expect("persist");
    let p = page_all(store, c).await;
    assert_eq!(p[0].text, "nulinside");
    assert_eq!(p[1].text, "quote ' and $1 and ?");
    assert_eq!(p[2].text, long);
    let st = store.conversation_state(c).await.expect("state").expect("exists");
    assert_eq!(st.preview, schema::excerpt(&long, schema::limits::EXCERPT_CHARS));
    assert_eq!(st.preview.chars().count(), schema::limits::EXCERPT_CHARS + 1);
}

// ---------------------------------------------------------------- connect

#[tokio::test]
async fn two_processes_migrate_one_fresh_sqlite_file() {
    let dir = std::env::temp_dir().join(format!("t_store_{}", uuid::Uuid::new_v4().simple()));
    let url = format!("sqlite://{}/chat.db", dir.display());
    let (a, b) = tokio::join!(Store::connect(&url), Store::connect(&url));
    let (a, b) = (a.expect("first"), b.expect("second"));
    a.persist(&[cmsg("x", 1)]).await.expect("persist");
    assert_eq!(b.message_count("x").await.expect("count"), 1);
    // Reconnecting runs the migrations again as a no-op.
    let c = Store::connect(&url).await.expect("third");
    assert_eq!(c.message_count("x").await.expect("count"), 1);
    let mode = sqlx::query_scalar::<_, String>("PRAGMA journal_mode")
        .fetch_one(&mut <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.expect("raw"))
        .await
        .expect("pragma");
    assert_eq!(mode.to_lowercase(), "wal");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn two_processes_migrate_one_fresh_postgres_db() {
    let (url, name) = common::create_pg_db().await;
    // The second spells the scheme `postgresql://`, which must work the same.
    let alt = url.replacen("postgres://", "postgresql://", 1);
    let (a, b) = tokio::join!(Store::connect(&url), Store::connect(&alt));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.backend(), Backend::Postgres);
    assert_eq!(b.backend(), Backend::Postgres);
    a.persist(&[cmsg("x", 1)]).await.expect("persist");
    assert_eq!(b.message_count("x").await.expect("count"), 1);
    a.close().await;
    b.close().await;
    common::drop_pg_db(name);
}

#[tokio::test]
async fn concurrent_persists_of_one_conversation_converge() {
    for pg in [false, true] {
        let db = if pg { common::postgres().await } else { common::sqlite().await };
        let events = history("cc");
        let (left, right) = events.split_at(events.len() / 2);
        let mut tasks = Vec::new();
        for part in [left.to_vec(), right.to_vec(), events.clone()] {
            let s = db.store.clone();
            tasks.push(tokio::spawn(async move { s.persist(&part).await }));
        }
        for t in tasks {
            t.await.expect("join").expect("persist");
        }
        store_eq_reference(&db.store).await;
    }
}

async fn store_eq_reference(store: &Store) {
    let got = snapshot(store, "cc").await;
    store.persist(&history("ref")).await.expect("reference");
    assert_eq!(got, snapshot(store, "ref").await);
}

#[tokio::test]
async fn in_memory_sqlite_is_shared_by_the_pool() {
    let store = Store::connect("sqlite::memory:").await.expect("memory");
    store.persist(&[cmsg("m", 1), cmsg("m", 2)]).await.expect("persist");
    // Several reads at once use several pooled connections: all see one database.
    let counts = futures_join(&store).await;
    assert!(counts.iter().all(|&n| n == 2), "{counts:?}");
}

async fn futures_join(store: &Store) -> Vec<u64> {
    let (a, b, c, d) = tokio::join!(
        store.message_count("m"),
        store.message_count("m"),
        store.message_count("m"),
        store.message_count("m")
    );
    [a, b, c, d].into_iter().map(|r| r.expect("count")).collect()
}

#[tokio::test]
async fn bad_urls_are_rejected() {
    assert!(matches!(Store::connect("mysql://x").await, Err(store::StoreError::Invalid(_))));
}
