//! Applying a batch of [`LogEvent`]s in one transaction.
//!
//! Delivery is at-least-once and, after a crashed worker's entries are
//! reclaimed, in any order. So every write here is idempotent and commutes
//! with the others:
//! - messages insert on `(conversation_id, seq)` and never change after;
//! - edits win by `(edited_at, pos)`, deletes always win over edits;
//! - an edit or delete whose message is not stored yet leaves a *stub* row
//!   holding its outcome, which the message fills in when it arrives;
//! - reactions are last-writer-wins by `pos`; read positions and `last_pos`
//!   only grow;
//! - an order card's payload is last-writer-wins by `pos` (`order_pos`); an
//!   update that arrives before its card leaves a stub like an edit does;
//! - derived columns (preview, last_ts, unread) are recomputed from the rows,
//!   never incremented.
//!
//! The batch is first folded in memory into one row per key ([`Plan`]) so each
//! table gets a few multi-row statements; PostgreSQL also refuses an
//! `ON CONFLICT DO UPDATE` that touches one row twice in one statement.

use std::collections::BTreeMap;

use schema::envelope::LogEvent;
use schema::frames::{Side, UserKind};
use schema::limits::EXCERPT_CHARS;
use sqlx::any::AnyArguments;
use sqlx::{Any, AnyConnection};

use crate::{Backend, ConversationState, Persisted, Result, STATE_COLUMNS};

/// Most bind parameters per statement. SQLite once got slower with larger
/// multi-row statements (4000 parameters: ~2.5x the time per batch of 999):
/// that was the O(n²) parameter-name walk that plain `?` now avoids (see
/// [`values`]); 999 is also SQLite's historical limit.
const MAX_PARAMS: usize = 999;

pub(crate) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// PostgreSQL rejects NUL in text; strip it on both backends so they agree.
fn clean(s: &str) -> String {
    if s.contains('\0') {
        s.replace('\0', "")
    } else {
        s.to_string()
    }
}

fn user_kind_str(k: UserKind) -> &'static str {
    match k {
        UserKind::Agent => "agent",
        UserKind::Customer => "customer",
    }
}

#[derive(Debug, Default)]
struct ConvAgg {
    customer_id: Option<String>,
    last_pos: i64,
    /// Highest message seq in the batch: the latest message, found by key.
    last_msg_seq: i64,
    staff_delivered: i64,
    staff_seen: i64,
    customer_delivered: i64,
    customer_seen: i64,
    first_ts: i64,
    /// Something in the batch can change the chat-list row (anything but a
    /// customer's receipt: the row shows no customer read state).
    row_may_change: bool,
}

#[derive(Debug)]
struct CustomerAgg {
    username: String,
    avatar_url: Option<String>,
    ts: i64,
    first_ts: i64,
}

#[derive(Debug)]
struct MsgRow {
    kind: &'static str,
    author_kind: Option<&'static str>,
    author_id: Option<String>,
    author_name: Option<String>,
    text: String,
    excerpt: String,
    reply_to_seq: Option<i64>,
    reply_excerpt: Option<String>,
    ts: i64,
    client_id: Option<String>,
    order_json: Option<String>,
    /// The attachments as JSON (clients' shape), and their ids.
    attachments_json: Option<String>,
    attachment_ids: Vec<String>,
}

#[derive(Debug)]
struct EditRow {
    text: String,
    excerpt: String,
    edited_at: i64,
    pos: i64,
}

/// The batch folded to one entry per key; maps are ordered so that rows are
/// written (and locked) in the same order by every worker.
#[derive(Debug, Default)]
struct Plan {
    customers: BTreeMap<String, CustomerAgg>,
    convs: BTreeMap<String, ConvAgg>,
    messages: BTreeMap<(String, i64), MsgRow>,
    edits: BTreeMap<(String, i64), EditRow>,
    deletes: BTreeMap<(String, i64), ()>,
    /// (conv, seq, who, emoji) -> (on, pos)
    reactions: BTreeMap<(String, i64, String, &'static str), (bool, i64)>,
    /// (conv, seq) -> (pos, order JSON) of the newest card update.
    order_cards: BTreeMap<(String, i64), (i64, String)>,
    /// Every edit and delete of the batch, for the audit trail, by
    /// (conv, seq, pos): each one, not only the winner per message.
    audits: BTreeMap<(String, i64, i64), Audit>,
}

/// One row of `message_edits` before its `previous_text` is known.
#[derive(Debug)]
struct Audit {
    action: &'static str,
    by_kind: &'static str,
    by_id: String,
    /// The edit's new text; `None` for a delete.
    text: Option<String>,
    ts: i64,
}

fn max_in(slot: &mut i64, v: i64) {
    if v > *slot {
        *slot = v;
    }
}

impl Plan {
    fn conv(&mut self, conv: &str, ts: i64) -> &mut ConvAgg {
        let c = self.convs.entry(conv.to_string()).or_insert_with(|| ConvAgg { first_ts: ts, ..ConvAgg::default() });
        if ts < c.first_ts {
            c.first_ts = ts;
        }
        c
    }

    fn build(events: &[LogEvent]) -> Plan {
        let mut p = Plan::default();
        for e in events {
            let row_may_change = !matches!(e, LogEvent::Read { side: Side::Customer, .. });
            match e {
                LogEvent::Message {
                    conversation,
                    customer,
                    seq,
                    ts,
                    kind,
                    author,
                    text,
                    reply_to,
                    client_id,
                    order_json,
                    attachments,
                } => {
                    let seq = to_i64(*seq);
                    let c = p.conv(conversation, *ts);
                    max_in(&mut c.last_pos, seq);
                    max_in(&mut c.last_msg_seq, seq);
                    c.customer_id.get_or_insert_with(|| customer.id.clone());
                    let entry = p.customers.entry(customer.id.clone()).or_insert_with(|| CustomerAgg {
                        username: customer.username.clone(),
                        avatar_url: customer.avatar_url.clone(),
                        ts: *ts,
                        first_ts: *ts,
                    });
                    if *ts >= entry.ts {
                        entry.username = customer.username.clone();
                        entry.avatar_url = customer.avatar_url.clone();
                        entry.ts = *ts;
                    }
                    if *ts < entry.first_ts {
                        entry.first_ts = *ts;
                    }
                    let text = clean(text);
                    p.messages.entry((conversation.clone(), seq)).or_insert_with(|| MsgRow {
                        kind: kind.as_str(),
                        author_kind: author.as_ref().map(|a| user_kind_str(a.kind)),
                        author_id: author.as_ref().map(|a| clean(&a.id)),
                        author_name: author.as_ref().map(|a| clean(&a.username)),
                        excerpt: clean(&schema::frames::message_excerpt(&text, attachments)),
                        text,
                        reply_to_seq: reply_to.as_ref().map(|r| to_i64(r.seq)),
                        reply_excerpt: reply_to.as_ref().map(|r| clean(&r.excerpt)),
                        ts: *ts,
                        client_id: client_id.as_deref().map(clean),
                        order_json: order_json.as_deref().map(clean),
                        attachments_json: if attachments.is_empty() {
                            None
                        } else {
                            serde_json::to_string(attachments).ok().map(|j| clean(&j))
                        },
                        attachment_ids: attachments.iter().map(|a| clean(&a.id)).collect(),
                    });
                }
                LogEvent::Edit { conversation, pos, seq, text, edited_at, by } => {
                    let (pos, seq) = (to_i64(*pos), to_i64(*seq));
                    max_in(&mut p.conv(conversation, *edited_at).last_pos, pos);
                    let text = clean(text);
                    p.audits.insert(
                        (conversation.clone(), seq, pos),
                        Audit { action: "edit", by_kind: user_kind_str(by.kind), by_id: clean(&by.id), text: Some(text.clone()), ts: *edited_at },
                    );
                    let row = EditRow { excerpt: schema::excerpt(&text, EXCERPT_CHARS), text, edited_at: *edited_at, pos };
                    match p.edits.entry((conversation.clone(), seq)) {
                        std::collections::btree_map::Entry::Vacant(v) => {
                            v.insert(row);
                        }
                        std::collections::btree_map::Entry::Occupied(mut o) => {
                            if (row.edited_at, row.pos) >= (o.get().edited_at, o.get().pos) {
                                o.insert(row);
                            }
                        }
                    }
                }
                LogEvent::Delete { conversation, pos, seq, ts, by } => {
                    max_in(&mut p.conv(conversation, *ts).last_pos, to_i64(*pos));
                    p.audits.insert(
                        (conversation.clone(), to_i64(*seq), to_i64(*pos)),
                        Audit { action: "delete", by_kind: user_kind_str(by.kind), by_id: clean(&by.id), text: None, ts: *ts },
                    );
                    p.deletes.insert((conversation.clone(), to_i64(*seq)), ());
                }
                LogEvent::React { conversation, pos, seq, emoji, on, by, ts } => {
                    let pos = to_i64(*pos);
                    max_in(&mut p.conv(conversation, *ts).last_pos, pos);
                    let who = format!("{}:{}", user_kind_str(by.kind), clean(&by.id));
                    let key = (conversation.clone(), to_i64(*seq), who, emoji.as_str());
                    let slot = p.reactions.entry(key).or_insert((*on, pos));
                    if pos > slot.1 {
                        *slot = (*on, pos);
                    }
                }
                LogEvent::OrderCard { conversation, pos, seq, order_json, ts } => {
                    let pos = to_i64(*pos);
                    max_in(&mut p.conv(conversation, *ts).last_pos, pos);
                    let slot = p.order_cards.entry((conversation.clone(), to_i64(*seq))).or_insert((pos, clean(order_json)));
                    if pos > slot.0 {
                        *slot = (pos, clean(order_json));
                    }
                }
                LogEvent::Read { conversation, side, delivered, seen, ts } => {
                    // A receipt has no position of its own: it leaves last_pos alone.
                    let c = p.conv(conversation, *ts);
                    let (d, s) = (to_i64(*delivered), to_i64(*seen));
                    match side {
                        Side::Staff => {
                            max_in(&mut c.staff_delivered, d);
                            max_in(&mut c.staff_seen, s);
                        }
                        Side::Customer => {
                            max_in(&mut c.customer_delivered, d);
                            max_in(&mut c.customer_seen, s);
                        }
                    }
                }
            }
            if row_may_change {
                if let Some(c) = p.convs.get_mut(e.conversation()) {
                    c.row_may_change = true;
                }
            }
        }
        p
    }
}

/// `rows` copies of `row` (whose `?` are placeholders), numbered `$n` for
/// PostgreSQL and left as plain `?` for SQLite.
///
/// Why SQLite gets `?`: sqlx binds each parameter after asking SQLite for its
/// name (`sqlite3_bind_parameter_name`), which walks the statement's list of
/// named parameters, so `$1..$n` cost O(n²) per statement: with 999
/// parameters that walk was 28% of the worker's CPU (perf, 3,000 msg/s).
/// Plain `?` parameters have no names, so the walk is empty.
fn values(backend: Backend, row: &str, rows: usize) -> String {
    if backend == Backend::Sqlite {
        return vec![row; rows].join(", ");
    }
    let mut out = String::with_capacity(rows * (row.len() + 16));
    let mut n = 0usize;
    for i in 0..rows {
        if i > 0 {
            out.push_str(", ");
        }
        for ch in row.chars() {
            if ch == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(ch);
            }
        }
    }
    out
}

fn chunk_len(cols: usize) -> usize {
    (MAX_PARAMS / cols).max(1)
}

type Args<'q> = sqlx::query::Query<'q, Any, AnyArguments<'q>>;

/// Runs `INSERT ... VALUES <rows> <tail>` over `items` in chunks; returns rows affected.
async fn insert_chunked<'a, T: 'a>(
    conn: &mut AnyConnection,
    backend: Backend,
    head: &str,
    row: &str,
    tail: &str,
    items: &'a [T],
    bind: impl for<'q> Fn(Args<'q>, &'q T) -> Args<'q>,
) -> Result<u64> {
    let cols = row.matches('?').count();
    let mut affected = 0;
    for chunk in items.chunks(chunk_len(cols)) {
        let sql = format!("{head} VALUES {} {tail}", values(backend, row, chunk.len()));
        let mut q = sqlx::query(&sql);
        for item in chunk {
            q = bind(q, item);
        }
        affected += q.execute(&mut *conn).await?.rows_affected();
    }
    Ok(affected)
}

/// `n` placeholders for an `IN (...)` list (see [`values`]).
fn in_list(backend: Backend, n: usize) -> String {
    values(backend, "?", n)
}

pub(crate) async fn persist(
    pool: &sqlx::AnyPool,
    backend: Backend,
    events: &[LogEvent],
) -> Result<(Persisted, Vec<ConversationState>)> {
    if events.is_empty() {
        return Ok((Persisted::default(), Vec::new()));
    }
    let plan = Plan::build(events);
    // SQLite: take the write lock up front; a deferred transaction that reads
    // first can fail with SQLITE_BUSY instead of waiting.
    let mut tx = match backend {
        Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
        Backend::Postgres => pool.begin().await?,
    };

    // Customers (sorted, so concurrent workers lock rows in the same order).
    let customers: Vec<_> = plan.customers.iter().collect();
    insert_chunked(
        &mut tx,
        backend,
        "INSERT INTO customers (id, username, avatar_url, created_at, profile_ts)",
        "(?, ?, ?, ?, ?)",
        "ON CONFLICT (id) DO UPDATE SET
            username = CASE WHEN excluded.profile_ts >= customers.profile_ts THEN excluded.username ELSE customers.username END,
            avatar_url = CASE WHEN excluded.profile_ts >= customers.profile_ts THEN excluded.avatar_url ELSE customers.avatar_url END,
            profile_ts = CASE WHEN excluded.profile_ts >= customers.profile_ts THEN excluded.profile_ts ELSE customers.profile_ts END,
            created_at = CASE WHEN excluded.created_at < customers.created_at THEN excluded.created_at ELSE customers.created_at END",
        &customers,
        |q, (id, c)| {
            q.bind(id.as_str()).bind(c.username.as_str()).bind(c.avatar_url.as_deref()).bind(c.first_ts).bind(c.ts)
        },
    )
    .await?;

    // Conversations: create, raise positions. Always DO UPDATE (even when
    // nothing grows): on PostgreSQL that locks the row until commit, so two
    // workers holding events of one conversation serialise here and the
    // recompute below sees every committed message.
    let convs: Vec<_> = plan.convs.iter().collect();
    let max_sql = |c: &str| format!("{c} = CASE WHEN excluded.{c} > conversations.{c} THEN excluded.{c} ELSE conversations.{c} END");
    let tail = format!(
        "ON CONFLICT (id) DO UPDATE SET {}, {}, {}, {}, {}, {}, created_at = CASE WHEN excluded.created_at < conversations.created_at THEN excluded.created_at ELSE conversations.created_at END",
        max_sql("last_pos"),
        max_sql("last_msg_seq"),
        max_sql("staff_delivered"),
        max_sql("staff_seen"),
        max_sql("customer_delivered"),
        max_sql("customer_seen"),
    );
    insert_chunked(
        &mut tx,
        backend,
        "INSERT INTO conversations (id, customer_id, last_pos, last_msg_seq, staff_delivered, staff_seen,
            customer_delivered, customer_seen, created_at)",
        "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
        &tail,
        &convs,
        |q, (id, c)| {
            q.bind(id.as_str())
                .bind(c.customer_id.as_deref().unwrap_or(id.as_str()))
                .bind(c.last_pos)
                .bind(c.last_msg_seq)
                .bind(c.staff_delivered)
                .bind(c.staff_seen)
                .bind(c.customer_delivered)
                .bind(c.customer_seen)
                .bind(c.first_ts)
        },
    )
    .await?;

    // Messages: a stored message never changes; a stub (edit/delete that came
    // first) takes the message's fields but keeps its own text and flags (a
    // stub left by an order-card update has neither: it takes the text too).
    let messages: Vec<_> = plan.messages.iter().collect();
    let inserted = insert_chunked(
        &mut tx,
        backend,
        "INSERT INTO messages (conversation_id, seq, stub, kind, author_kind, author_id, author_name, text, excerpt,
            reply_to_seq, reply_excerpt, ts, edited_at, edit_pos, deleted, client_id, order_json, attachments_json)",
        "(?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 0, 0, ?, ?, ?)",
        "ON CONFLICT (conversation_id, seq) DO UPDATE SET
            stub = 0, kind = excluded.kind, author_kind = excluded.author_kind, author_id = excluded.author_id,
            author_name = excluded.author_name, reply_to_seq = excluded.reply_to_seq,
            reply_excerpt = excluded.reply_excerpt, ts = excluded.ts, client_id = excluded.client_id,
            attachments_json = excluded.attachments_json,
            order_json = CASE WHEN messages.order_pos > 0 THEN messages.order_json ELSE excluded.order_json END,
            text = CASE WHEN messages.edited_at IS NULL AND messages.deleted = 0 THEN excluded.text ELSE messages.text END,
            excerpt = CASE WHEN messages.edited_at IS NULL AND messages.deleted = 0 THEN excluded.excerpt ELSE messages.excerpt END
         WHERE messages.stub = 1",
        &messages,
        |q, ((conv, seq), m)| {
            q.bind(conv.as_str())
                .bind(*seq)
                .bind(m.kind)
                .bind(m.author_kind)
                .bind(m.author_id.as_deref())
                .bind(m.author_name.as_deref())
                .bind(m.text.as_str())
                .bind(m.excerpt.as_str())
                .bind(m.reply_to_seq)
                .bind(m.reply_excerpt.as_deref())
                .bind(m.ts)
                .bind(m.client_id.as_deref())
                .bind(m.order_json.as_deref())
                .bind(m.attachments_json.as_deref())
        },
    )
    .await?;

    // Uploads sent with these messages now belong to them (the gateway
    // claimed them for the conversation at `send`).
    for ((conv, seq), m) in plan.messages.iter().filter(|(_, m)| !m.attachment_ids.is_empty()) {
        for id in &m.attachment_ids {
            sqlx::query("UPDATE attachments SET seq = $1 WHERE id = $2 AND conversation_id = $3 AND seq IS NULL")
                .bind(*seq)
                .bind(id.as_str())
                .bind(conv.as_str())
                .execute(&mut *tx)
                .await?;
        }
    }

    // The audit trail, before the edits and deletes change the text (the
    // messages of this batch are already in): each change's previous text
    // is the record's text, then the text of the batch's earlier change of
    // that message (by position).
    write_audits(&mut tx, backend, &plan.audits).await?;

    let edits: Vec<_> = plan.edits.iter().collect();
    insert_chunked(
        &mut tx,
        backend,
        "INSERT INTO messages (conversation_id, seq, stub, kind, text, excerpt, ts, edited_at, edit_pos, deleted)",
        "(?, ?, 1, '', ?, ?, 0, ?, ?, 0)",
        "ON CONFLICT (conversation_id, seq) DO UPDATE SET
            text = excluded.text, excerpt = excluded.excerpt, edited_at = excluded.edited_at, edit_pos = excluded.edit_pos
         WHERE messages.deleted = 0 AND (messages.edited_at IS NULL OR messages.edited_at < excluded.edited_at
            OR (messages.edited_at = excluded.edited_at AND messages.edit_pos <= excluded.edit_pos))",
        &edits,
        |q, ((conv, seq), e)| {
            q.bind(conv.as_str()).bind(*seq).bind(e.text.as_str()).bind(e.excerpt.as_str()).bind(e.edited_at).bind(e.pos)
        },
    )
    .await?;

    let deletes: Vec<_> = plan.deletes.keys().collect();
    insert_chunked(
        &mut tx,
        backend,
        "INSERT INTO messages (conversation_id, seq, stub, kind, text, excerpt, ts, deleted)",
        "(?, ?, 1, '', '', '', 0, 1)",
        // edited_at is cleared too: an edit that lost the race against the
        // delete must leave no trace, whichever of the two arrived first.
        "ON CONFLICT (conversation_id, seq) DO UPDATE SET deleted = 1, text = '', excerpt = '', edited_at = NULL, edit_pos = 0",
        &deletes,
        |q, (conv, seq)| q.bind(conv.as_str()).bind(*seq),
    )
    .await?;

    // A deleted message's uploads go with it (the gateways sweep their
    // blobs): on its delete, or on the message when its delete came first.
    let now = schema::now_ms();
    let with_files = plan.messages.iter().filter(|(_, m)| !m.attachment_ids.is_empty()).map(|(k, _)| k);
    for (conv, seq) in plan.deletes.keys().chain(with_files) {
        sqlx::query(
            "UPDATE attachments SET deleted_at = $1 WHERE conversation_id = $2 AND seq = $3 AND deleted_at IS NULL
               AND EXISTS (SELECT 1 FROM messages m WHERE m.conversation_id = $2 AND m.seq = $3 AND m.deleted = 1)",
        )
        .bind(now)
        .bind(conv.as_str())
        .bind(*seq)
        .execute(&mut *tx)
        .await?;
    }

    let cards: Vec<_> = plan.order_cards.iter().collect();
    insert_chunked(
        &mut tx,
        backend,
        "INSERT INTO messages (conversation_id, seq, stub, kind, text, excerpt, ts, order_json, order_pos)",
        "(?, ?, 1, '', '', '', 0, ?, ?)",
        "ON CONFLICT (conversation_id, seq) DO UPDATE SET order_json = excluded.order_json, order_pos = excluded.order_pos
         WHERE messages.order_pos < excluded.order_pos",
        &cards,
        |q, ((conv, seq), (pos, json))| q.bind(conv.as_str()).bind(*seq).bind(json.as_str()).bind(*pos),
    )
    .await?;

    let reactions: Vec<_> = plan.reactions.iter().collect();
    insert_chunked(
        &mut tx,
        backend,
        "INSERT INTO reactions (conversation_id, seq, who, emoji, on_state, pos)",
        "(?, ?, ?, ?, ?, ?)",
        "ON CONFLICT (conversation_id, seq, who, emoji) DO UPDATE SET on_state = excluded.on_state, pos = excluded.pos
         WHERE excluded.pos > reactions.pos",
        &reactions,
        |q, ((conv, seq, who, emoji), (on, pos))| {
            q.bind(conv.as_str()).bind(*seq).bind(who.as_str()).bind(*emoji).bind(i64::from(*on)).bind(*pos)
        },
    )
    .await?;

    // Derived columns, recomputed from the rows so replays cannot double
    // count. The latest message is found by key (last_msg_seq), never by a
    // scan of the conversation; unread scans only the messages after
    // staff_seen.
    // Only where the row may have changed: a batch of customer receipts
    // (a third of a busy business's events) leaves unread, preview and
    // last_ts as they were, and its conversations need no row update.
    let ids: Vec<&str> = plan.convs.iter().filter(|(_, c)| c.row_may_change).map(|(k, _)| k.as_str()).collect();
    for chunk in ids.chunks(MAX_PARAMS) {
        let sql = format!(
            "UPDATE conversations SET
                unread = (SELECT COUNT(*) FROM messages m WHERE m.conversation_id = conversations.id
                    AND m.seq > conversations.staff_seen AND m.kind = 'customer' AND m.deleted = 0),
                last_ts = COALESCE((SELECT m.ts FROM messages m WHERE m.conversation_id = conversations.id
                    AND m.seq = conversations.last_msg_seq AND m.stub = 0), 0),
                preview = COALESCE((SELECT CASE WHEN m.deleted = 1 THEN '{deleted}' ELSE m.excerpt END
                    FROM messages m WHERE m.conversation_id = conversations.id
                    AND m.seq = conversations.last_msg_seq AND m.stub = 0), '')
             WHERE id IN ({list})",
            deleted = crate::DELETED_PREVIEW,
            list = in_list(backend, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(&mut *tx).await?;
    }

    let states = read_states(&mut tx, backend, &ids).await?;
    tx.commit().await?;
    Ok((Persisted { conversations: ids.iter().map(|s| s.to_string()).collect(), inserted: inserted as usize }, states))
}

/// Writes the batch's `message_edits` rows (see [`Plan::audits`]). The
/// previous text is what the record holds when the worker applies the
/// change: exact when a message's changes arrive in order (the normal case);
/// a change redelivered after a later one of the same message (a reclaimed
/// entry) records the later text. `NULL` when the message is not stored yet.
async fn write_audits(conn: &mut AnyConnection, backend: Backend, audits: &BTreeMap<(String, i64, i64), Audit>) -> Result<()> {
    if audits.is_empty() {
        return Ok(());
    }
    let keys: Vec<(&str, i64)> = {
        let mut k: Vec<(&str, i64)> = audits.keys().map(|(c, s, _)| (c.as_str(), *s)).collect();
        k.dedup();
        k
    };
    let mut current: BTreeMap<(String, i64), Option<String>> = BTreeMap::new();
    for chunk in keys.chunks(MAX_PARAMS / 2) {
        let sql = format!(
            "SELECT conversation_id, seq, stub, text FROM messages WHERE (conversation_id, seq) IN (VALUES {})",
            values(backend, "(?, ?)", chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (conv, seq) in chunk {
            q = q.bind(*conv).bind(*seq);
        }
        for row in q.fetch_all(&mut *conn).await? {
            use sqlx::Row;
            let stub: i64 = row.try_get("stub")?;
            let text: String = row.try_get("text")?;
            current.insert((row.try_get("conversation_id")?, row.try_get("seq")?), (stub == 0).then_some(text));
        }
    }
    type AuditRow<'a> = (&'a str, i64, i64, &'a Audit, Option<String>);
    let mut rows: Vec<AuditRow> = Vec::with_capacity(audits.len());
    let mut prev: Option<((&str, i64), Option<String>)> = None;
    for ((conv, seq, pos), a) in audits {
        let key = (conv.as_str(), *seq);
        let before = match &prev {
            Some((k, text)) if *k == key => text.clone(),
            _ => current.get(&(conv.clone(), *seq)).cloned().flatten(),
        };
        let after = match &a.text {
            Some(t) => Some(t.clone()),
            None => Some(String::new()),
        };
        rows.push((conv.as_str(), *seq, *pos, a, before));
        prev = Some((key, after));
    }
    insert_chunked(
        conn,
        backend,
        "INSERT INTO message_edits (conversation_id, seq, pos, action, by_kind, by_id, previous_text, ts)",
        "(?, ?, ?, ?, ?, ?, ?, ?)",
        "ON CONFLICT (conversation_id, pos) DO NOTHING",
        &rows,
        |q, (conv, seq, pos, a, before)| {
            q.bind(*conv).bind(*seq).bind(*pos).bind(a.action).bind(a.by_kind).bind(a.by_id.as_str()).bind(before.as_deref()).bind(a.ts)
        },
    )
    .await?;
    Ok(())
}

/// States of `ids` (those that exist), ordered by id.
pub(crate) async fn read_states(conn: &mut AnyConnection, backend: Backend, ids: &[&str]) -> Result<Vec<ConversationState>> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_PARAMS) {
        let sql = format!(
            "SELECT {STATE_COLUMNS} FROM conversations c LEFT JOIN customers cu ON cu.id = c.customer_id
             WHERE c.id IN ({}) ORDER BY c.id",
            in_list(backend, chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for row in q.fetch_all(&mut *conn).await? {
            out.push(crate::state_from_row(&row)?);
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Indexes of the [`LogEvent::Message`]s in `events` whose position is held
/// by a *different* message in the record: what a conversation's counter
/// going back (a Redis failover that lost its last increments) produces. A
/// redelivered message is the same message, so it is not one. Compared on
/// what never changes after the insert: kind, author, time and `client_id`
/// (the text may have been edited since).
pub(crate) async fn seq_conflicts(pool: &sqlx::AnyPool, backend: Backend, events: &[LogEvent]) -> Result<Vec<usize>> {
    type Print = (String, Option<String>, i64, Option<String>);
    let mut wanted: Vec<(usize, (String, i64), Print)> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let LogEvent::Message { conversation, seq, ts, kind, author, client_id, .. } = e {
            let print = (kind.as_str().to_string(), author.as_ref().map(|a| clean(&a.id)), *ts, client_id.as_deref().map(clean));
            wanted.push((i, (conversation.clone(), to_i64(*seq)), print));
        }
    }
    let mut stored: BTreeMap<(String, i64), Print> = BTreeMap::new();
    for chunk in wanted.chunks(MAX_PARAMS / 2) {
        // Row values: `(a, b) IN (VALUES (?, ?), ...)` on both backends.
        let sql = format!(
            "SELECT conversation_id, seq, kind, author_id, ts, client_id FROM messages
             WHERE stub = 0 AND (conversation_id, seq) IN (VALUES {})",
            values(backend, "(?, ?)", chunk.len())
        );
        let mut q = sqlx::query(&sql);
        for (_, (conv, seq), _) in chunk {
            q = q.bind(conv.as_str()).bind(*seq);
        }
        for row in q.fetch_all(pool).await? {
            use sqlx::Row;
            let key = (row.try_get::<String, _>("conversation_id")?, row.try_get::<i64, _>("seq")?);
            let print = (
                row.try_get::<String, _>("kind")?,
                row.try_get::<Option<String>, _>("author_id")?,
                row.try_get::<i64, _>("ts")?,
                row.try_get::<Option<String>, _>("client_id")?,
            );
            stored.insert(key, print);
        }
    }
    Ok(wanted.into_iter().filter(|(_, key, print)| stored.get(key).is_some_and(|s| s != print)).map(|(i, _, _)| i).collect())
}

/// For a [`LogEvent::Message`] with an author and a `client_id`: the seq at
/// which the record already holds that sender's message with that
/// `client_id`, when it is another seq (a retry later than Redis's dedupe
/// window, which `messages_client_once` keeps from being stored twice).
pub(crate) async fn stored_copy(pool: &sqlx::AnyPool, event: &LogEvent) -> Result<Option<u64>> {
    let LogEvent::Message { conversation, seq, author: Some(author), client_id: Some(client_id), .. } = event else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT seq FROM messages WHERE conversation_id = $1 AND author_kind = $2 AND author_id = $3 AND client_id = $4
         AND stub = 0 AND seq <> $5",
    )
    .bind(conversation.as_str())
    .bind(user_kind_str(author.kind))
    .bind(clean(&author.id))
    .bind(clean(client_id))
    .bind(to_i64(*seq))
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some(r) => {
            use sqlx::Row;
            Some(r.try_get::<i64, _>("seq")?.max(0) as u64)
        }
        None => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_across_rows() {
        assert_eq!(values(Backend::Postgres, "(?, 0, ?)", 2), "($1, 0, $2), ($3, 0, $4)");
        assert_eq!(in_list(Backend::Postgres, 3), "$1, $2, $3");
        assert_eq!(values(Backend::Sqlite, "(?, 0, ?)", 2), "(?, 0, ?), (?, 0, ?)");
        assert_eq!(in_list(Backend::Sqlite, 3), "?, ?, ?");
    }
}
