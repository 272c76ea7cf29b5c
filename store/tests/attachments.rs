//! Uploads in the record, on SQLite and PostgreSQL: claimed once by their
//! uploader, linked to their message by the worker's persist, carried by
//! history and previews, marked deleted with their message, swept.

mod common;

use schema::envelope::LogEvent;
use schema::frames::{CustomerRef, MessageKind, UserKind, UserRef};
use store::attachments::Upload;
use store::Store;

macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let db = crate::common::sqlite().await;
                crate::$name(&db.store).await;
            }
            #[tokio::test]
            async fn postgres() {
                let db = crate::common::postgres().await;
                crate::$name(&db.store).await;
            }
        }
    )*};
}

both!(claim_persist_delete_sweep);

fn upload(id: &str, owner: &str, ct: &str, created_at: i64) -> Upload {
    Upload {
        id: id.into(),
        owner_kind: "customer".into(),
        owner_id: owner.into(),
        name: format!("{id}.bin"),
        size: 10,
        content_type: ct.into(),
        blob_key: format!("b/{id}"),
        thumb_key: ct.starts_with("image/").then(|| format!("t/{id}")),
        width: ct.starts_with("image/").then_some(4),
        height: ct.starts_with("image/").then_some(3),
        created_at,
        conversation_id: None,
        client_id: None,
        seq: None,
        deleted_at: None,
    }
}

fn message(conv: &str, seq: u64, client_id: &str, text: &str, files: &[&Upload]) -> LogEvent {
    LogEvent::Message {
        conversation: conv.into(),
        customer: CustomerRef { id: conv.into(), username: conv.into(), avatar_url: None },
        seq,
        ts: 1_000 + seq as i64,
        kind: MessageKind::Customer,
        author: Some(UserRef { kind: UserKind::Customer, id: conv.into(), username: conv.into() }),
        text: text.into(),
        reply_to: None,
        client_id: Some(client_id.into()),
        order_json: None,
        attachments: files.iter().map(|u| u.to_attachment()).collect(),
    }
}

const C1: &str = "00000000-0000-0000-0000-000000000001";
const C2: &str = "00000000-0000-0000-0000-000000000002";

async fn claim_persist_delete_sweep(s: &Store) {
    let now = schema::now_ms();
    let photo = upload("p1", "ann", "image/png", now);
    let pdf = upload("f1", "ann", "application/pdf", now);
    let bobs = upload("b1", "bob", "text/plain", now);
    for u in [&photo, &pdf, &bobs] {
        s.insert_upload(u).await.unwrap();
    }
    // Someone else's upload, or an unknown one: nothing is claimed, not even ann's own.
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(s.claim_uploads("customer", "ann", "ann", C1, &ids(&["p1", "b1"])).await.unwrap(), None);
    assert_eq!(s.claim_uploads("customer", "ann", "ann", C1, &ids(&["nope"])).await.unwrap(), None);
    assert_eq!(s.upload("p1").await.unwrap().unwrap().conversation_id, None);
    // The owner claims; a retry of the same send claims again; another message cannot.
    let got = s.claim_uploads("customer", "ann", "ann", C1, &ids(&["p1"])).await.unwrap().unwrap();
    assert_eq!(got[0].conversation_id.as_deref(), Some("ann"));
    assert!(s.claim_uploads("customer", "ann", "ann", C1, &ids(&["p1"])).await.unwrap().is_some());
    assert_eq!(s.claim_uploads("customer", "ann", "ann", C2, &ids(&["p1"])).await.unwrap(), None);
    assert!(s.claim_uploads("customer", "ann", "ann", C2, &ids(&["f1"])).await.unwrap().is_some());

    // The worker persists the messages: history carries the files, the preview names them.
    s.persist(&[message("ann", 1, C1, "", &[&photo])]).await.unwrap();
    let (page, _) = s.messages_page("ann", None, 10).await.unwrap();
    assert_eq!(page[0].attachments, vec![photo.to_attachment()]);
    assert_eq!(page[0].text, "");
    assert_eq!(s.conversation_state("ann").await.unwrap().unwrap().preview, "Photo");
    assert_eq!(s.message_meta("ann", 1).await.unwrap().unwrap().excerpt, "Photo");
    s.persist(&[message("ann", 2, C2, "", &[&pdf])]).await.unwrap();
    assert_eq!(s.conversation_state("ann").await.unwrap().unwrap().preview, "File: f1.bin");
    assert_eq!(s.upload("p1").await.unwrap().unwrap().seq, Some(1));

    // Nothing is swept yet: sent files stay, an unsent one is younger than the window.
    assert!(s.sweepable_uploads(now - 1, 86_400_000, 100).await.unwrap().is_empty());
    // A day later, bob's unsent upload goes; the sent ones stay.
    let later = s.sweepable_uploads(now + 1, 86_400_000, 100).await.unwrap();
    assert_eq!(later.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(), vec!["b1"]);

    // An edit keeps the files; a delete hides them and marks them for the sweep.
    let by = UserRef { kind: UserKind::Customer, id: "ann".into(), username: "ann".into() };
    s.persist(&[LogEvent::Edit { conversation: "ann".into(), pos: 3, seq: 1, text: "my order".into(), edited_at: 2_000, by: by.clone() }])
        .await
        .unwrap();
    let (page, _) = s.messages_page("ann", None, 10).await.unwrap();
    assert_eq!((page[0].text.as_str(), page[0].attachments.len()), ("my order", 1));
    s.persist(&[LogEvent::Delete { conversation: "ann".into(), pos: 4, seq: 1, ts: 2_001, by }]).await.unwrap();
    let (page, _) = s.messages_page("ann", None, 10).await.unwrap();
    assert!(page[0].deleted && page[0].attachments.is_empty());
    assert!(s.upload("p1").await.unwrap().unwrap().deleted_at.is_some());
    let swept: Vec<String> = s.sweepable_uploads(now - 1, 86_400_000, 100).await.unwrap().into_iter().map(|u| u.id).collect();
    assert_eq!(swept, vec!["p1"]);
    s.delete_upload("p1").await.unwrap();
    assert_eq!(s.upload("p1").await.unwrap(), None);

    // A delete that arrives before its message (redelivery out of order) still marks the files.
    let late = upload("l1", "ann", "image/png", now);
    s.insert_upload(&late).await.unwrap();
    let c3 = "00000000-0000-0000-0000-000000000003";
    s.claim_uploads("customer", "ann", "ann", c3, &ids(&["l1"])).await.unwrap().unwrap();
    let by = UserRef { kind: UserKind::Customer, id: "ann".into(), username: "ann".into() };
    s.persist(&[LogEvent::Delete { conversation: "ann".into(), pos: 6, seq: 5, ts: 3_000, by }]).await.unwrap();
    s.persist(&[message("ann", 5, c3, "", &[&late])]).await.unwrap();
    assert!(s.upload("l1").await.unwrap().unwrap().deleted_at.is_some());
}
