//! The core relay end to end: real gateways, worker, Redis and SQL store.

mod common;

use std::time::Duration;

use common::{is_msg, uuid, Db, Stack};
use serde_json::{json, Value};

async fn exchange(db: Db) {
    exchange_on(Stack::start(2, 1, db).await).await;
}

async fn exchange_on(s: Stack) {
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("ann").await;
    let mut agent = s.ws(0, &agent_tok).await; // gateway A
    agent.watch(&conv, 0).await;
    let mut cust = s.ws(1, &cust_tok).await; // gateway B
    assert_eq!(cust.hello["conversation"], conv.as_str());
    assert_eq!(agent.hello["user"]["kind"], "agent");
    assert_ne!(agent.hello["node"], cust.hello["node"]);

    let a1 = cust.say(&conv, "hello from B").await;
    assert_eq!(a1["type"], "ack", "{a1}");
    assert_eq!(a1["seq"], 1);
    let m = agent.expect(is_msg(&conv, "hello from B")).await;
    assert_eq!(m["message"]["seq"], 1);
    assert_eq!(m["message"]["kind"], "customer");
    assert_eq!(m["message"]["author"]["username"], "ann");

    let a2 = agent.say(&conv, "hi from A").await;
    assert_eq!(a2["type"], "ack", "{a2}");
    assert_eq!(a2["seq"], 2);
    let m = cust.expect(is_msg(&conv, "hi from A")).await;
    assert_eq!(m["message"]["kind"], "staff");
    assert_eq!(m["message"]["seq"], 2);

    // Both are in the SQL record, in order.
    let h = s.history_until(&conv, &agent_tok, |h| h.len() == 2).await;
    assert_eq!(h[0]["text"], "hello from B");
    assert_eq!(h[1]["text"], "hi from A");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_exchange_sqlite() {
    exchange(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_gateways_exchange_postgres() {
    exchange(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn resend_same_client_id_is_not_duplicated() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("bo").await;
    let mut agent = s.ws(0, &agent_tok).await;
    agent.watch(&conv, 0).await;
    let mut cust = s.ws(0, &cust_tok).await;
    let cid = uuid();
    let send = |rid: &str| json!({"type":"send","rid":rid,"conversation":conv,"client_id":cid,"text":"only once"});
    cust.send(send("r1")).await;
    let a1 = cust.reply("r1").await;
    cust.send(send("r2")).await;
    let a2 = cust.reply("r2").await;
    assert_eq!(a1["seq"], a2["seq"], "{a1} {a2}");
    assert_eq!(a2["duplicate"], true);
    agent.expect(is_msg(&conv, "only once")).await;
    agent.expect_none(Duration::from_millis(700), is_msg(&conv, "only once")).await;
    let h = s.history_until(&conv, &agent_tok, |h| !h.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let h2 = s.history_until(&conv, &agent_tok, |_| true).await;
    assert_eq!(h.len(), 1);
    assert_eq!(h2.len(), 1);
    let list = s.list_until("", &agent_tok, |l| l["items"][0]["unread"] == 1).await;
    assert_eq!(list["items"][0]["unread"], 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_and_receipts() {
    let s = Stack::start(2, 1, Db::Sqlite).await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("cy").await;
    let mut agent = s.ws(0, &agent_tok).await;
    agent.watch(&conv, 0).await;
    let mut cust = s.ws(1, &cust_tok).await;

    cust.send(json!({"type":"typing","conversation":conv})).await;
    let t = agent.expect(|f| f["type"] == "typing").await;
    assert_eq!(t["who"]["username"], "cy");
    assert!(t["expires_in_ms"].as_u64().unwrap() > 0);
    // The typist does not get its own indicator.
    cust.expect_none(Duration::from_millis(300), |f| f["type"] == "typing").await;
    agent.send(json!({"type":"typing","conversation":conv})).await;
    let t = cust.expect(|f| f["type"] == "typing").await;
    assert_eq!(t["who"]["kind"], "agent");

    // Staff message: sent (ack) -> delivered (double) -> seen (filled double).
    let ack = agent.say(&conv, "your order is ready").await;
    let seq = ack["seq"].as_u64().unwrap();
    cust.expect(is_msg(&conv, "your order is ready")).await;
    cust.send(json!({"type":"delivered","conversation":conv,"seq":seq})).await;
    let r = agent.expect(|f| f["type"] == "receipt").await;
    assert_eq!(r["delivered_seq"], seq);
    assert_eq!(r["seen_seq"], 0);
    cust.send(json!({"type":"seen","conversation":conv,"seq":seq})).await;
    let r = agent.expect(|f| f["type"] == "receipt").await;
    assert_eq!(r["delivered_seq"], seq);
    assert_eq!(r["seen_seq"], seq);
    // The receipt state is also readable over REST (for a console that just opened).
    let (_, c) = s.get(0, &format!("/api/conversations/{conv}"), &agent_tok).await;
    assert_eq!(c["receipts"]["customer_seen"], seq);
    assert_eq!(c["online"], true);
    // Seeing beyond the last position is refused.
    cust.send(json!({"type":"seen","rid":"x","conversation":conv,"seq":seq + 50})).await;
    let e = cust.reply("x").await;
    assert_eq!(e["code"], "invalid");
}

#[tokio::test(flavor = "multi_thread")]
async fn edit_delete_react_reply() {
    let s = Stack::start(2, 1, Db::Sqlite).await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("di").await;
    let mut agent = s.ws(0, &agent_tok).await;
    agent.watch(&conv, 0).await;
    let mut cust = s.ws(1, &cust_tok).await;

    let c1 = cust.say(&conv, "what time do you open?").await["seq"].as_u64().unwrap();
    let s1 = agent.say(&conv, "at 8").await["seq"].as_u64().unwrap();

    // Edit by the author's side, live on both sides.
    agent.send(json!({"type":"edit","rid":"e1","conversation":conv,"seq":s1,"text":"at 7:30"})).await;
    assert_eq!(agent.reply("e1").await["type"], "ack");
    let e = cust.expect(|f| f["type"] == "edited").await;
    assert_eq!(e["seq"], s1);
    assert_eq!(e["text"], "at 7:30");
    assert!(e["edited_at"].as_i64().unwrap() > 0);
    // The other side may not edit or delete it.
    cust.send(json!({"type":"edit","rid":"e2","conversation":conv,"seq":s1,"text":"hacked"})).await;
    assert_eq!(cust.reply("e2").await["code"], "forbidden");
    cust.send(json!({"type":"delete","rid":"d0","conversation":conv,"seq":s1})).await;
    assert_eq!(cust.reply("d0").await["code"], "forbidden");
    agent.send(json!({"type":"edit","rid":"e3","conversation":conv,"seq":c1,"text":"hacked"})).await;
    assert_eq!(agent.reply("e3").await["code"], "forbidden");

    // Reply carries the quote.
    cust.send(json!({"type":"send","rid":"rp","conversation":conv,"client_id":uuid(),"text":"thanks!","reply_to":s1})).await;
    let rp = cust.reply("rp").await;
    let rp_seq = rp["seq"].as_u64().unwrap();
    let m = agent.expect(is_msg(&conv, "thanks!")).await;
    assert_eq!(m["message"]["reply_to"]["seq"], s1);
    assert_eq!(m["message"]["reply_to"]["excerpt"], "at 7:30");
    cust.send(json!({"type":"send","rid":"rp2","conversation":conv,"client_id":uuid(),"text":"?","reply_to":999})).await;
    assert_eq!(cust.reply("rp2").await["code"], "not_found");

    // Reactions toggle; counts propagate.
    for (who, rid) in [(&mut agent, "x1"), (&mut cust, "x2")] {
        who.send(json!({"type":"react","rid":rid,"conversation":conv,"seq":c1,"emoji":"heart","on":true})).await;
        assert_eq!(who.reply(rid).await["type"], "ack");
    }
    let r = agent.expect(|f| f["type"] == "reactions" && f["reactions"]["heart"] == 2).await;
    assert_eq!(r["seq"], c1);
    cust.send(json!({"type":"react","rid":"x3","conversation":conv,"seq":c1,"emoji":"heart","on":false})).await;
    cust.reply("x3").await;
    agent.expect(|f| f["type"] == "reactions" && f["reactions"]["heart"] == 1 && f["on"] == false).await;
    // Toggling on twice counts once.
    agent.send(json!({"type":"react","rid":"x4","conversation":conv,"seq":c1,"emoji":"heart","on":true})).await;
    agent.reply("x4").await;
    for e in ["thumbs_up", "laughing", "surprised", "sad", "fire"] {
        let rid = format!("all-{e}");
        cust.send(json!({"type":"react","rid":rid,"conversation":conv,"seq":s1,"emoji":e,"on":true})).await;
        assert_eq!(cust.reply(&rid).await["type"], "ack");
    }

    // Delete by the author: live, and history keeps the seq with no text.
    cust.send(json!({"type":"delete","rid":"d1","conversation":conv,"seq":c1})).await;
    assert_eq!(cust.reply("d1").await["type"], "ack");
    let d = agent.expect(|f| f["type"] == "deleted").await;
    assert_eq!(d["seq"], c1);
    cust.send(json!({"type":"edit","rid":"d2","conversation":conv,"seq":c1,"text":"again"})).await;
    assert_eq!(cust.reply("d2").await["code"], "not_found");

    let h = s
        .history_until(&conv, &agent_tok, |h| {
            h.len() == 3 && h[0]["deleted"] == true && h[1]["edited_at"].is_i64() && h[1]["reactions"].as_object().is_some_and(|r| r.len() == 5)
        })
        .await;
    assert_eq!(h[0]["seq"], c1);
    assert_eq!(h[0]["text"], "");
    assert_eq!(h[1]["text"], "at 7:30");
    assert_eq!(h[2]["seq"], rp_seq);
    assert_eq!(h[2]["reply_to"]["seq"], s1);
    assert_eq!(h[2]["reply_to"]["excerpt"], "at 7:30");
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_list_order_unread_search_pages() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let agent_tok = s.agent_token().await;
    let mut agent = s.ws(0, &agent_tok).await;
    let names = ["zed", "amy", "amber", "bill", "bea"];
    let mut convs = vec![];
    for n in names {
        let (tok, conv) = s.customer(n).await;
        let mut c = s.ws(0, &tok).await;
        c.say(&conv, &format!("hi, I am {n}")).await;
        c.say(&conv, &format!("{n} again")).await;
        convs.push(conv);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The worker persists asynchronously: wait for the final state of the list.
    let l = s.list_until("", &agent_tok, |l| l["total"] == 5 && l["items"][0]["preview"] == "bea again" && l["items"][4]["preview"] == "zed again").await;
    let order: Vec<&str> = l["items"].as_array().unwrap().iter().map(|r| r["customer"]["username"].as_str().unwrap()).collect();
    assert_eq!(order, ["bea", "bill", "amber", "amy", "zed"]);
    let first = &l["items"][0];
    assert_eq!(first["preview"], "bea again");
    assert_eq!(first["unread"], 2);
    assert!(first["last_ts"].as_i64().unwrap() > 0);
    // The worker pushes rows live too.
    agent.expect(|f| f["type"] == "conversation" && f["customer"]["username"] == "bea").await;

    // Cursor pages of 2 cover everything once, in order.
    let mut seen = vec![];
    let mut cursor = String::new();
    loop {
        let p = s.list(&format!("?limit=2&cursor={cursor}"), &agent_tok).await;
        for r in p["items"].as_array().unwrap() {
            seen.push(r["customer"]["username"].as_str().unwrap().to_string());
        }
        match p["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(seen, order);

    // Username search (prefix, case-insensitive).
    let r = s.list("?search=AM", &agent_tok).await;
    let mut found: Vec<&str> = r["items"].as_array().unwrap().iter().map(|r| r["customer"]["username"].as_str().unwrap()).collect();
    found.sort();
    assert_eq!(found, ["amber", "amy"]);
    assert_eq!(r["total"], 5);

    // Seeing a conversation clears its unread count; unread_only drops it.
    let amy = &convs[1];
    agent.send(json!({"type":"seen","conversation":amy,"seq":2})).await;
    let l = s.list_until("?unread_only=true", &agent_tok, |l| l["items"].as_array().unwrap().len() == 4).await;
    assert!(l["items"].as_array().unwrap().iter().all(|r| r["customer"]["username"] != "amy"));
    let all = s.list("", &agent_tok).await;
    let amy_row = all["items"].as_array().unwrap().iter().find(|r| r["id"] == amy.as_str()).unwrap().clone();
    assert_eq!(amy_row["unread"], 0);
    assert_eq!(all["total"], 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_replays_missed_events_once_in_order() {
    let s = Stack::start(2, 1, Db::Sqlite).await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("eve").await;
    let mut agent = s.ws(0, &agent_tok).await;
    let mut cust = s.ws(0, &cust_tok).await;
    let first = cust.say(&conv, "before").await["seq"].as_u64().unwrap();
    cust.expect(is_msg(&conv, "before")).await;
    drop(cust);

    // While the customer is away: messages, an edit, a reaction.
    let mut sent = vec![];
    for i in 0..5 {
        sent.push(agent.say(&conv, &format!("missed {i}")).await["seq"].as_u64().unwrap());
    }
    agent.send(json!({"type":"edit","rid":"e","conversation":conv,"seq":sent[0],"text":"missed 0 (edited)"})).await;
    agent.reply("e").await;
    agent.send(json!({"type":"react","rid":"r","conversation":conv,"seq":first,"emoji":"fire","on":true})).await;
    agent.reply("r").await;

    // Reconnect to the other gateway and resume.
    let mut cust = s.ws(1, &cust_tok).await;
    cust.send(json!({"type":"resume","positions":{conv.clone(): first}})).await;
    let done = cust.expect(|f| f["type"] == "replay").await;
    assert_eq!(done["complete"], true, "{done}");
    let events: Vec<Value> = cust.buf.drain(..).filter(|f| f["pos"].is_u64()).collect();
    let pos: Vec<u64> = events.iter().map(|f| f["pos"].as_u64().unwrap()).collect();
    assert_eq!(pos, ((first + 1)..=(first + 7)).collect::<Vec<_>>(), "every event once, in order: {events:#?}");
    assert_eq!(events[5]["type"], "edited");
    assert_eq!(events[6]["type"], "reactions");
    // Nothing more arrives for those positions.
    cust.expect_none(Duration::from_millis(500), |f| f["pos"].as_u64().is_some_and(|p| p <= first + 7)).await;

    // Ten reconnects with resume and no new traffic replay nothing.
    let last = first + 7;
    for _ in 0..10 {
        let mut c = s.ws(1, &cust_tok).await;
        c.send(json!({"type":"resume","positions":{conv.clone(): last}})).await;
        let r = c.expect(|f| f["type"] == "replay").await;
        assert_eq!(r["complete"], true);
        assert!(c.buf.iter().all(|f| !f["pos"].is_u64()), "{:?}", c.buf);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn resume_older_than_replay_stream_says_reload() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_REPLAY_LEN", "5").env("CHAT_SEND_RATE", "100000");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("fay").await;
    let mut agent = s.ws(0, &agent_tok).await;
    for i in 0..300 {
        agent.say(&conv, &format!("m{i}")).await;
    }
    let mut cust = s.ws(0, &cust_tok).await;
    cust.send(json!({"type":"resume","positions":{conv.clone(): 1}})).await;
    let r = cust.expect(|f| f["type"] == "replay").await;
    assert_eq!(r["complete"], false, "{r}");
    assert_eq!(r["to_seq"], 300);
    // A position from a Redis that lost its state (ahead of this one) also says reload.
    cust.send(json!({"type":"resume","positions":{conv.clone(): 100000}})).await;
    let r = cust.expect(|f| f["type"] == "replay").await;
    assert_eq!(r["complete"], false);
}

/// Redis keeps hot state for active conversations only: message metadata is
/// capped at `CHAT_REPLAY_LEN` positions, the replay stream and metadata
/// expire `CHAT_REPLAY_TTL_SECS` after the last event; afterwards resume says
/// reload, and editing, quoting and reacting to old messages still work (their
/// metadata comes back from the SQL record).
#[tokio::test(flavor = "multi_thread")]
async fn hot_state_is_bounded_and_expires() {
    let mut s = Stack::new(Db::Sqlite)
        .await
        .env("CHAT_REPLAY_LEN", "5")
        .env("CHAT_REPLAY_TTL_SECS", "2")
        .env("CHAT_SEND_RATE", "100000");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("hal").await;
    let mut agent = s.ws(0, &agent_tok).await;
    agent.watch(&conv, 0).await;
    let mut cust = s.ws(0, &cust_tok).await;
    for i in 1..=20 {
        assert_eq!(agent.say(&conv, &format!("h{i}")).await["seq"], i);
    }
    let keys = schema::keys::Keys::new(&s.prefix);
    let mut r = s.redis().get_multiplexed_async_connection().await.unwrap();
    // A send writes no metadata hash: a message's side and excerpt ride in
    // its replay entry, and the stream is capped near CHAT_REPLAY_LEN.
    let meta: i64 = redis::AsyncCommands::exists(&mut r, keys.meta(&conv)).await.unwrap();
    assert_eq!(meta, 0, "sends write no metadata hash");
    let len: usize = redis::AsyncCommands::xlen(&mut r, keys.replay(&conv)).await.unwrap();
    assert!((5..20).contains(&len), "replay stream capped near CHAT_REPLAY_LEN: {len}");
    for k in [keys.replay(&conv), keys.state(&conv)] {
        let ttl: i64 = redis::AsyncCommands::pttl(&mut r, &k).await.unwrap();
        assert!(ttl > 0 && ttl <= 2000, "{k}: pttl {ttl}");
    }

    // Let the worker persist, then the hot state expire.
    s.history_until(&conv, &agent_tok, |h| h.len() == 20).await;
    tokio::time::sleep(Duration::from_millis(2600)).await;
    for k in [keys.replay(&conv), keys.state(&conv)] {
        let n: i64 = redis::AsyncCommands::exists(&mut r, &k).await.unwrap();
        assert_eq!(n, 0, "{k} still there after its TTL");
    }

    // A client resuming after the stream expired is told to reload.
    let mut late = s.ws(0, &cust_tok).await;
    late.send(json!({"type":"resume","positions":{conv.clone(): 18}})).await;
    let rp = late.expect(|f| f["type"] == "replay").await;
    assert_eq!(rp["complete"], false, "{rp}");
    assert_eq!(rp["to_seq"], 20);

    // Old messages: edit, quote and react all work from the SQL record.
    agent.send(json!({"type":"edit","rid":"e","conversation":conv,"seq":1,"text":"h1 (edited)"})).await;
    assert_eq!(agent.reply("e").await["type"], "ack");
    let e = cust.expect(|f| f["type"] == "edited").await;
    assert_eq!(e["seq"], 1);
    cust.send(json!({"type":"send","rid":"q","conversation":conv,"client_id":uuid(),"text":"about h2","reply_to":2})).await;
    let q = cust.reply("q").await;
    assert_eq!(q["type"], "ack", "{q}");
    let m = agent.expect(is_msg(&conv, "about h2")).await;
    assert_eq!(m["message"]["reply_to"]["excerpt"], "h2");
    cust.send(json!({"type":"react","rid":"x","conversation":conv,"seq":3,"emoji":"heart","on":true})).await;
    assert_eq!(cust.reply("x").await["type"], "ack");
    let rx = agent.expect(|f| f["type"] == "reactions").await;
    assert_eq!(rx["seq"], 3);
    // Positions go on from where they were; the stream holds the new events.
    assert!(q["seq"].as_u64().unwrap() > 20, "{q}");
    late.send(json!({"type":"resume","positions":{conv.clone(): 20}})).await;
    let rp = late.expect(|f| f["type"] == "replay").await;
    assert_eq!(rp["complete"], true, "{rp}");
    // A sent client_id is remembered in the conversation's state while it
    // is among the last CHAT_REPLAY_LEN messages.
    let cid = uuid();
    let mut seqs = Vec::new();
    for rid in ["d1", "d2"] {
        cust.send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":cid,"text":"once"})).await;
        let a = cust.reply(rid).await;
        assert_eq!(a["type"], "ack", "{a}");
        seqs.push(a["seq"].clone());
    }
    assert_eq!(seqs[0], seqs[1], "a retry gets the first send's seq");
    let held: Option<String> = redis::AsyncCommands::hget(&mut r, keys.state(&conv), format!("d:customer:{conv}:{cid}")).await.unwrap(); // scoped by sender (issue 20)
    assert_eq!(held.as_deref().and_then(|v| v.split(':').next()), Some(seqs[0].to_string().as_str()), "{held:?}");
    let h = s.history_until(&conv, &agent_tok, |h| h.iter().any(|m| m["text"] == "once")).await;
    assert_eq!(h.iter().filter(|m| m["text"] == "once").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_the_worker_loses_nothing() {
    let mut s = Stack::new(Db::Postgres).await.env("CHAT_SEND_RATE", "100000");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("gus").await;
    let mut cust = s.ws(0, &cust_tok).await;
    let mut acked = 0;
    for i in 0..400 {
        if i == 150 {
            s.workers[0].kill9();
        }
        let a = cust.say(&conv, &format!("n{i}")).await;
        if a["type"] == "ack" {
            acked += 1;
        } else {
            panic!("not acked: {a}");
        }
    }
    // A new worker (another consumer) takes over the dead one's pending entries.
    s.add_worker();
    // Wait (bounded) until the whole history has arrived: the dead worker's
    // pending entries come back once they are idle past CHAT_CLAIM_IDLE_MS.
    let total = acked;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut seqs = std::collections::BTreeSet::new();
    while std::time::Instant::now() < deadline {
        seqs.clear();
        let mut cursor: Option<u64> = None;
        loop {
            let q = cursor.map(|c| format!("&before={c}")).unwrap_or_default();
            let (_, p) = s.get(0, &format!("/api/conversations/{conv}/messages?limit=100{q}"), &agent_tok).await;
            let items = p["items"].as_array().unwrap();
            for m in items {
                assert!(seqs.insert(m["seq"].as_u64().unwrap()), "duplicate seq {}", m["seq"]);
            }
            if p["has_more"] != true {
                break;
            }
            cursor = items.first().and_then(|m| m["seq"].as_u64());
        }
        if seqs.len() as u64 >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seqs.len() as u64, total, "every acked message persisted exactly once");
    assert_eq!(seqs.into_iter().collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors_and_the_socket_survives() {
    let mut s = Stack::new(Db::Sqlite).await.env("CHAT_SEND_RATE", "5");
    s.add_worker();
    s.add_gateway();
    s.wait_ready().await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("hal").await;
    let (other_tok, other) = s.customer("ida").await;
    let mut cust = s.ws(0, &cust_tok).await;
    let mut other_ws = s.ws(0, &other_tok).await;
    let mut agent = s.ws(0, &agent_tok).await;

    cust.send_raw("{not json".into()).await;
    let e = cust.expect(|f| f["type"] == "error").await;
    assert_eq!(e["code"], "invalid");
    assert!(e["message"].as_str().unwrap().contains("JSON"));

    cust.send(json!({"type":"fly","rid":"u"})).await;
    let e = cust.reply("u").await;
    assert_eq!(e["code"], "invalid");
    assert!(e["message"].as_str().unwrap().contains("unknown frame type"));

    cust.send(json!({"type":"send","rid":"m","conversation":conv,"text":"x"})).await;
    let e = cust.reply("m").await;
    assert!(e["message"].as_str().unwrap().contains("client_id"), "{e}");

    cust.send(json!({"type":"send","rid":"big","conversation":conv,"client_id":uuid(),"text":"x".repeat(4001)})).await;
    assert_eq!(cust.reply("big").await["code"], "too_large");

    // A customer writing into another customer's conversation.
    cust.send(json!({"type":"send","rid":"f","conversation":other,"client_id":uuid(),"text":"psst"})).await;
    assert_eq!(cust.reply("f").await["code"], "forbidden");
    for (ty, extra) in [("edit", json!({"seq":1,"text":"x"})), ("delete", json!({"seq":1})), ("react", json!({"seq":1,"emoji":"fire","on":true})), ("seen", json!({"seq":1})), ("delivered", json!({"seq":1}))] {
        let mut f = json!({"type":ty,"rid":ty,"conversation":other});
        f.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        cust.send(f).await;
        assert_eq!(cust.reply(ty).await["code"], "forbidden", "{ty}");
    }
    other_ws.expect_none(Duration::from_millis(300), |f| f["type"] == "message").await;
    // REST too: another customer's history and profile.
    let (st, body) = s.get(0, &format!("/api/conversations/{other}/messages"), &cust_tok).await;
    assert_eq!(st, 403);
    assert_eq!(body["error"]["code"], "forbidden");
    let (st, _) = s.get(0, "/api/conversations", &cust_tok).await;
    assert_eq!(st, 403);

    // Unknown conversation for an agent.
    agent.send(json!({"type":"send","rid":"nf","conversation":"nobody","client_id":uuid(),"text":"hello?"})).await;
    assert_eq!(agent.reply("nf").await["code"], "not_found");
    let (st, _) = s.get(0, "/api/conversations/nobody/messages", &agent_tok).await;
    assert_eq!(st, 404);

    // Still usable after all that.
    assert_eq!(cust.say(&conv, "still here").await["type"], "ack");

    // Flooding: rate_limited, then usable again after a pause.
    let mut limited = 0;
    for i in 0..40 {
        let rid = format!("fl{i}");
        cust.send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":uuid(),"text":"spam"})).await;
        if cust.reply(&rid).await["code"] == "rate_limited" {
            limited += 1;
        }
    }
    assert!(limited > 0, "flooding was never rate limited");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(cust.say(&conv, "calm again").await["type"], "ack");

    // A frame over the size limit closes the socket with 1009; others are unaffected.
    cust.send_raw(format!("{{\"type\":\"send\",\"text\":\"{}\"}}", "x".repeat(70 * 1024))).await;
    assert_eq!(cust.closed_code().await, 1009);
    assert_eq!(other_ws.say(&other, "I am fine").await["type"], "ack");

    // No token, bad token, bad origin.
    let r = s.http.get(format!("{}/api/conversations", s.url(0))).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s.http.get(format!("{}/api/conversations", s.url(0))).bearer_auth("cust.00.00.1.00").send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = s.http.post(format!("{}/api/login", s.url(0))).body("{").send().await.unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid");
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_auth_and_origin() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let agent_tok = s.agent_token().await;
    let addr = s.gateways[0].addr.clone();
    // A ticket works once.
    let t: Value = s.http.post(format!("{}/api/ws-ticket", s.url(0))).bearer_auth(&agent_tok).send().await.unwrap().json().await.unwrap();
    let ticket = t["ticket"].as_str().unwrap();
    let url = format!("ws://{addr}/ws?ticket={ticket}");
    assert!(tokio_tungstenite::connect_async(&url).await.is_ok());
    let err = tokio_tungstenite::connect_async(&url).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    // A foreign origin is refused with 403.
    let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {agent_tok}").parse().unwrap());
    req.headers_mut().insert("origin", "https://evil.example".parse().unwrap());
    let err = tokio_tungstenite::connect_async(req).await.unwrap_err();
    assert!(err.to_string().contains("403"), "{err}");
    // Logout revokes the session.
    s.http.post(format!("{}/api/logout", s.url(0))).bearer_auth(&agent_tok).send().await.unwrap();
    let (st, _) = s.get(0, "/api/me", &agent_tok).await;
    assert_eq!(st, 401);
}

/// Two sends to one conversation from different nodes can reach the relay
/// streams in the opposite order of their positions. A socket that meets the
/// conversation for the first time with the later one must still get both,
/// once and in order. (Found by the load test: about one message in 20,000
/// never reached any receiver, because a fresh socket took the later
/// position as its starting point and dropped the earlier one.)
#[tokio::test(flavor = "multi_thread")]
async fn positions_published_out_of_order_reach_a_fresh_socket_in_order() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let (cust_tok, conv) = s.customer("olga").await;
    let mut cust = s.ws(0, &cust_tok).await;
    let first = cust.say(&conv, "first").await["seq"].as_u64().unwrap();
    // The node has relayed `first`. Now a second socket of the customer (another tab) that has seen nothing.
    let mut tab = s.ws(0, &cust_tok).await;
    tab.send(json!({"type":"ping"})).await;
    tab.expect(|f| f["type"] == "pong").await;

    // Two later positions, sequenced in order but published in reverse, as two racing nodes may.
    let (p2, p3) = (first + 1, first + 2);
    replay_then_publish(&s, &conv, &[(p2, "second", 1), (p3, "third", 1)], &[p3, p2]).await;

    let either = |f: &Value| f["conversation"] == conv.as_str() && f["pos"].as_u64().is_some_and(|p| p == p2 || p == p3);
    let a = tab.expect(either).await;
    let b = tab.expect(either).await;
    assert_eq!((a["pos"].as_u64(), b["pos"].as_u64()), (Some(p2), Some(p3)), "both, in position order: {a} {b}");
    tab.expect_none(Duration::from_millis(500), either).await;
}

/// Two sends to one conversation from different nodes can be published in
/// the opposite order of their positions. On a node that has relayed nothing
/// of the conversation yet, the earlier position published second must still
/// reach the socket, once and before the later one; what was sent before the
/// socket opened is not replayed to it.
#[tokio::test(flavor = "multi_thread")]
async fn reordered_publishes_on_first_contact_are_delivered_in_order() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let (cust_tok, conv) = s.customer("rena").await;
    let mut cust = s.ws(0, &cust_tok).await;
    cust.send(json!({"type":"resume","positions":{}})).await;
    let now = schema::now_ms();
    let entries = [(1, "before the socket", now - 60_000), (2, "first", now + 1), (3, "second", now + 2)];
    replay_then_publish(&s, &conv, &entries, &[3, 2]).await;
    let is_conv_msg = |f: &Value| f["type"] == "message" && f["conversation"] == conv.as_str();
    let first = cust.expect(is_conv_msg).await;
    assert_eq!(first["message"]["text"], "first", "{first}");
    let second = cust.expect(is_conv_msg).await;
    assert_eq!(second["message"]["text"], "second", "{second}");
    cust.expect_none(Duration::from_millis(700), is_conv_msg).await;
}

/// What two racing nodes may do: `entries` (position, text, sent at) are
/// numbered and in the conversation's replay stream (the sequence raised to
/// the last), then the positions in `publish` reach `node`'s inbox in that
/// order on the conversation's channel (for the customer's sockets).
async fn replay_then_publish(s: &Stack, conv: &str, entries: &[(u64, &str, i64)], publish: &[u64]) {
    use redis::AsyncCommands;
    let keys = schema::keys::Keys::new(s.prefix.clone());
    let mut r = s.redis().get_multiplexed_async_connection().await.expect("redis");
    let frame = |p: u64, text: &str, ts: i64| {
        json!({"type":"message","conversation":conv,"pos":p,"message":{"seq":p,"kind":"staff","author":null,
            "text":text,"ts":ts,"deleted":false,"reactions":{}}})
        .to_string()
    };
    for (p, t, ts) in entries {
        let _: String = r.xadd(keys.replay(conv), schema::keys::replay_id(*p), &[("f", frame(*p, t, *ts))]).await.expect("xadd replay");
    }
    let last = entries.iter().map(|e| e.0).max().unwrap_or(0);
    let _: () = r.hset(keys.state(conv), "n", last).await.expect("set the counter");
    for p in publish {
        let (_, t, ts) = entries.iter().find(|e| e.0 == *p).expect("published entry is in the replay");
        let _: i64 = r.publish(keys.channel(conv), format!("C{p} {}", frame(*p, t, *ts))).await.expect("publish");
    }
}

/// Agents receive a conversation's live events only while they watch it;
/// the chat list stays live for all conversations through `conversation`
/// rows. Watching replays what came after the client's position, exactly
/// once; unwatching stops the events; resume watches what it names; a node
/// stops being a watcher in Redis when its last watching socket goes.
#[tokio::test(flavor = "multi_thread")]
async fn agents_get_live_events_of_watched_conversations_only() {
    let s = Stack::start(2, 1, Db::Sqlite).await;
    let agent_tok = s.agent_token().await;
    let (tok_a, conv_a) = s.customer("wanda").await;
    let (tok_b, conv_b) = s.customer("wes").await;
    let mut agent = s.ws(0, &agent_tok).await;
    let mut ca = s.ws(1, &tok_a).await;
    let mut cb = s.ws(1, &tok_b).await;
    let r = agent.watch(&conv_a, 0).await;
    assert_eq!(r["complete"], true, "{r}");

    let of = |c: &str| {
        let c = c.to_string();
        move |f: &Value| f["conversation"] == c.as_str() && f["type"] != "replay"
    };
    cb.say(&conv_b, "b1").await;
    cb.send(json!({"type":"typing","conversation":conv_b})).await;
    ca.say(&conv_a, "a1").await;
    ca.send(json!({"type":"typing","conversation":conv_a})).await;
    agent.expect(is_msg(&conv_a, "a1")).await;
    agent.expect(|f| f["type"] == "typing" && f["conversation"] == conv_a.as_str()).await;
    // B is not watched: its chat-list row arrives (preview, unread), nothing else.
    let row = agent.expect(|f| f["type"] == "conversation" && f["id"] == conv_b.as_str()).await;
    assert_eq!(row["preview"], "b1");
    assert_eq!(row["unread"], 1);
    agent.expect_none(Duration::from_millis(300), |f| f["conversation"] == conv_b.as_str()).await;

    // Watching B replays what the agent does not hold, then live events follow, once each.
    let r = agent.watch(&conv_b, 0).await;
    assert_eq!(r["complete"], true, "{r}");
    assert_eq!(r["to_seq"], 1);
    let replayed: Vec<Value> = agent.buf.iter().filter(|f| of(&conv_b)(f)).cloned().collect();
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0]["message"]["text"], "b1");
    agent.buf.retain(|f| !of(&conv_b)(f));
    cb.say(&conv_b, "b2").await;
    agent.expect(is_msg(&conv_b, "b2")).await;
    agent.expect_none(Duration::from_millis(300), is_msg(&conv_b, "b2")).await;

    // Unwatching A: its events stop, its row still comes.
    agent.send(json!({"type":"unwatch","rid":"u","conversation":conv_a})).await;
    let u = agent.reply("u").await;
    assert_eq!(u["type"], "ack", "{u}");
    ca.say(&conv_a, "a2").await;
    agent.expect(|f| f["type"] == "conversation" && f["id"] == conv_a.as_str() && f["preview"] == "a2").await;
    agent.expect_none(Duration::from_millis(300), is_msg(&conv_a, "a2")).await;

    // In Redis: the agent's node listens to B only (the customers' node to both).
    let keys = schema::keys::Keys::new(s.prefix.clone());
    let r = s.redis().get_multiplexed_async_connection().await.unwrap();
    let subscribers = |conv: String| {
        let ch = keys.channel(&conv);
        let mut r = r.clone();
        async move {
            let (_, n): (String, i64) = redis::cmd("PUBSUB").arg("NUMSUB").arg(&ch).query_async(&mut r).await.unwrap();
            n
        }
    };
    assert_eq!(subscribers(conv_a.clone()).await, 1, "the agent's node left A");
    assert_eq!(subscribers(conv_b.clone()).await, 2, "both nodes listen to B");

    // A reconnecting console resumes what it holds, and so watches it again.
    let mut again = s.ws(0, &agent_tok).await;
    again.send(json!({"type":"resume","positions":{conv_b.clone(): 2}})).await;
    let rp = again.expect(|f| f["type"] == "replay").await;
    assert_eq!(rp["complete"], true, "{rp}");
    cb.say(&conv_b, "b3").await;
    again.expect(is_msg(&conv_b, "b3")).await;
    agent.expect(is_msg(&conv_b, "b3")).await;
    assert_eq!(subscribers(conv_b.clone()).await, 2, "two sockets of a node share its subscription");
    // One watching socket gone: the node still listens for the other.
    drop(again);
    tokio::time::sleep(Duration::from_millis(300)).await;
    cb.say(&conv_b, "b4").await;
    agent.expect(is_msg(&conv_b, "b4")).await;
    // Both gone: the node unsubscribes.
    drop(agent);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while subscribers(conv_b.clone()).await != 1 {
        assert!(std::time::Instant::now() < deadline, "the agent's node still listens to B");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Bad `watch`/`unwatch` frames get clear errors and the socket goes on.
#[tokio::test(flavor = "multi_thread")]
async fn watch_errors() {
    let s = Stack::start(1, 1, Db::Sqlite).await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("wyatt").await;
    let mut cust = s.ws(0, &cust_tok).await;
    cust.send(json!({"type":"watch","rid":"c","conversation":conv,"after":0})).await;
    assert_eq!(cust.reply("c").await["code"], "forbidden");
    cust.send(json!({"type":"unwatch","rid":"c2","conversation":conv})).await;
    assert_eq!(cust.reply("c2").await["code"], "forbidden");
    let mut agent = s.ws(0, &agent_tok).await;
    agent.send(json!({"type":"watch","rid":"n","conversation":"nobody-here","after":0})).await;
    assert_eq!(agent.reply("n").await["code"], "not_found");
    agent.send(json!({"type":"watch","rid":"m","after":0})).await;
    assert_eq!(agent.reply("m").await["code"], "invalid");
    agent.send(json!({"type":"watch","rid":"b","conversation":"bad id!","after":0})).await;
    assert_eq!(agent.reply("b").await["code"], "invalid");
    // At most 100 per socket: a resume naming 101 watches 100 and says so.
    let positions: serde_json::Map<String, Value> = (0..101).map(|i| (format!("w{i}"), json!(0))).collect();
    agent.send(json!({"type":"resume","rid":"r","positions":positions})).await;
    let e = agent.reply("r").await;
    assert_eq!(e["code"], "invalid", "{e}");
    assert!(e["message"].as_str().unwrap().contains("100"), "{e}");
    agent.send(json!({"type":"watch","rid":"over","conversation":conv,"after":0})).await;
    assert_eq!(agent.reply("over").await["code"], "invalid");
    // Unwatch one: room for another.
    agent.send(json!({"type":"unwatch","rid":"u","conversation":"w7"})).await;
    let u = agent.reply("u").await;
    assert_eq!(u["type"], "ack", "{u}");
    let r = agent.watch(&conv, 0).await;
    assert_eq!(r["complete"], true, "{r}");
    cust.say(&conv, "still fine").await;
    agent.expect(is_msg(&conv, "still fine")).await;
}
