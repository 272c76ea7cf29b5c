//! Uploads (`attachments`): written by the gateway when a file is uploaded
//! and claimed at `send`; the worker links them to their message's `seq`
//! (persist.rs) and marks them deleted with it; the gateways sweep unused
//! and deleted ones together with their blobs.

use schema::frames::Attachment;
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::{Backend, Result, Store};

/// An upload as the record has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: String,
    /// `agent` or `customer`.
    pub owner_kind: String,
    pub owner_id: String,
    pub name: String,
    pub size: u64,
    pub content_type: String,
    pub blob_key: String,
    pub thumb_key: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub created_at: i64,
    /// The conversation it was sent to (claimed at `send`).
    pub conversation_id: Option<String>,
    pub client_id: Option<String>,
    /// The message's seq, once the worker persisted it.
    pub seq: Option<u64>,
    pub deleted_at: Option<i64>,
}

impl Upload {
    /// What clients see of it.
    pub fn to_attachment(&self) -> Attachment {
        Attachment {
            id: self.id.clone(),
            name: self.name.clone(),
            size: self.size,
            content_type: self.content_type.clone(),
            url: format!("/api/attachments/{}", self.id),
            thumbnail_url: self.thumb_key.as_ref().map(|_| format!("/api/attachments/{}/thumbnail", self.id)),
            width: self.width,
            height: self.height,
        }
    }
}

const COLUMNS: &str = "id, owner_kind, owner_id, name, size, content_type, blob_key, thumb_key, width, height, created_at,
    conversation_id, client_id, seq, deleted_at";

fn from_row(r: &AnyRow) -> Result<Upload> {
    let dim = |c: &str| -> Result<Option<u32>> { Ok(r.try_get::<Option<i64>, _>(c)?.map(|v| v.clamp(0, u32::MAX as i64) as u32)) };
    Ok(Upload {
        id: r.try_get("id")?,
        owner_kind: r.try_get("owner_kind")?,
        owner_id: r.try_get("owner_id")?,
        name: r.try_get("name")?,
        size: r.try_get::<i64, _>("size")?.max(0) as u64,
        content_type: r.try_get("content_type")?,
        blob_key: r.try_get("blob_key")?,
        thumb_key: r.try_get("thumb_key")?,
        width: dim("width")?,
        height: dim("height")?,
        created_at: r.try_get("created_at")?,
        conversation_id: r.try_get("conversation_id")?,
        client_id: r.try_get("client_id")?,
        seq: r.try_get::<Option<i64>, _>("seq")?.map(|v| v.max(0) as u64),
        deleted_at: r.try_get("deleted_at")?,
    })
}

impl Store {
    /// Records a new upload (its blobs are already stored).
    pub async fn insert_upload(&self, u: &Upload) -> Result<()> {
        sqlx::query(
            "INSERT INTO attachments (id, owner_kind, owner_id, name, size, content_type, blob_key, thumb_key, width, height, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(u.id.as_str())
        .bind(u.owner_kind.as_str())
        .bind(u.owner_id.as_str())
        .bind(u.name.as_str())
        .bind(crate::persist::to_i64(u.size))
        .bind(u.content_type.as_str())
        .bind(u.blob_key.as_str())
        .bind(u.thumb_key.as_deref())
        .bind(u.width.map(i64::from))
        .bind(u.height.map(i64::from))
        .bind(u.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn upload(&self, id: &str) -> Result<Option<Upload>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM attachments WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Claims `ids` for the message `client_id` of `owner` in `conv`: each
    /// must be the owner's, not deleted, and unclaimed or claimed by this
    /// same message (a retried send). All or nothing: `None` when any is not
    /// (the caller answers `not_found`; nothing changes). Returns the uploads
    /// in the order of `ids`.
    pub async fn claim_uploads(
        &self,
        owner_kind: &str,
        owner_id: &str,
        conv: &str,
        client_id: &str,
        ids: &[String],
    ) -> Result<Option<Vec<Upload>>> {
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let n = sqlx::query(
                "UPDATE attachments SET conversation_id = $1, client_id = $2
                 WHERE id = $3 AND owner_kind = $4 AND owner_id = $5 AND deleted_at IS NULL
                   AND (conversation_id IS NULL OR (conversation_id = $1 AND client_id = $2))",
            )
            .bind(conv)
            .bind(client_id)
            .bind(id.as_str())
            .bind(owner_kind)
            .bind(owner_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n != 1 {
                tx.rollback().await?;
                return Ok(None);
            }
            let row = sqlx::query(&format!("SELECT {COLUMNS} FROM attachments WHERE id = $1")).bind(id.as_str()).fetch_one(&mut *tx).await?;
            out.push(from_row(&row)?);
        }
        tx.commit().await?;
        Ok(Some(out))
    }

    /// Uploads to remove with their blobs: never sent and uploaded before
    /// `unused_before` (ms), or deleted with their message. One claimed by
    /// a send but not persisted with a message (the send failed, or was
    /// never retried) gets one more `unused_before` window: a file sent
    /// just before the deadline is not swept while the worker persists it.
    pub async fn sweepable_uploads(&self, unused_before: i64, window_ms: i64, limit: usize) -> Result<Vec<Upload>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM attachments
             WHERE (seq IS NULL AND conversation_id IS NULL AND created_at < $1)
                OR (seq IS NULL AND created_at < $2)
                OR deleted_at IS NOT NULL
             ORDER BY created_at LIMIT $3"
        ))
        .bind(unused_before)
        .bind(unused_before - window_ms)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Forgets an upload whose blobs are gone.
    pub async fn delete_upload(&self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM attachments WHERE id = $1").bind(id).execute(&self.pool).await?;
        Ok(())
    }
}
