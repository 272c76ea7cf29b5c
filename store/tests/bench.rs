//! Throughput of `persist` (ignored by default; run with
//! `cargo test -p store --release --test bench -- --ignored --nocapture`).

mod common;

use std::time::Instant;

use schema::envelope::LogEvent;
use schema::frames::{CustomerRef, MessageKind, UserKind, UserRef};

fn batch(round: u64, size: u64, convs: u64) -> Vec<LogEvent> {
    (0..size)
        .map(|i| {
            let n = round * size + i;
            let conv = format!("c{}", n % convs);
            LogEvent::Message {
                conversation: conv.clone(),
                customer: CustomerRef { id: conv.clone(), username: format!("u{conv}"), avatar_url: None },
                seq: n / convs + 1,
                ts: n as i64,
                kind: MessageKind::Customer,
                author: Some(UserRef { kind: UserKind::Customer, id: conv.clone(), username: format!("u{conv}") }),
                text: format!("message number {n} with some ordinary length text in it"),
                reply_to: None,
                client_id: Some(format!("00000000-0000-0000-0000-{n:012}")),
                order_json: None,
                attachments: Vec::new(),
            }
        })
        .collect()
}

#[tokio::test]
#[ignore]
async fn persist_throughput() {
    for pg in [false, true] {
        let db = if pg { common::postgres().await } else { common::sqlite().await };
        let (rounds, size, convs) = (40u64, 512u64, 200u64);
        let started = Instant::now();
        for r in 0..rounds {
            db.store.persist(&batch(r, size, convs)).await.expect("persist");
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{:?}: {} events in {:.2}s = {:.0} events/s ({:.1} ms per batch of {size})",
            db.store.backend(),
            rounds * size,
            secs,
            (rounds * size) as f64 / secs,
            secs * 1000.0 / rounds as f64
        );
    }
}
