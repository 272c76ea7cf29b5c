//! Where uploaded files live: a bucket of blobs by key, behind the
//! `object_store` crate's [`ObjectStore`] trait (the storage trait), with two
//! backends chosen by URL:
//!
//! - a local directory (`file:///var/lib/chat/uploads`, or a bare path):
//!   the default, for one gateway or several sharing a volume;
//! - an S3-compatible bucket (`s3://bucket/optional/prefix`, with
//!   [`S3Settings`] for the endpoint and credentials): several gateways.
//!
//! [`Blobs`] adds what the chat needs on top: a put from a byte stream that
//! never holds the whole object (parts of [`Blobs::part_size`], at most two
//! in flight), a streamed get, and an idempotent delete.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("no such blob")]
    NotFound,
    #[error("bad storage configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Store(#[from] object_store::Error),
    #[error("reading the upload: {0}")]
    Source(#[from] std::io::Error),
}

pub type Result<T> = std::result::Result<T, BlobError>;

/// Settings of an S3-compatible store (unset fields: the crate's defaults,
/// which also read nothing from the environment here).
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// e.g. `http://127.0.0.1:9000` for a local server; unset: AWS.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow `http://` endpoints (local servers, tests).
    pub allow_http: bool,
}

/// A store of blobs by key (keys are `/`-separated, e.g. `ab/<id>`).
#[derive(Debug, Clone)]
pub struct Blobs {
    inner: Arc<dyn ObjectStore>,
    /// `local` or `s3`, for logs and metrics.
    kind: &'static str,
    part_size: usize,
}

/// S3 refuses multipart parts under 5 MiB (all but the last).
const S3_PART: usize = 5 * 1024 * 1024;
/// Local files are written in small parts: memory per upload stays small.
const LOCAL_PART: usize = 256 * 1024;
/// Parts of one upload in flight at once.
const MAX_IN_FLIGHT: usize = 2;

impl Blobs {
    /// Opens the store a URL names: `s3://bucket[/prefix]`, `file:///dir`,
    /// or a plain directory path (created when missing).
    pub fn open(url: &str, s3: &S3Settings) -> Result<Blobs> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(BlobError::Config(format!("no bucket in {url:?}")));
            }
            let mut b = AmazonS3Builder::new().with_bucket_name(bucket).with_allow_http(s3.allow_http);
            if let Some(e) = &s3.endpoint {
                // Path-style requests (`endpoint/bucket/key`): what local
                // S3-compatible servers answer without DNS per bucket.
                b = b.with_endpoint(e).with_virtual_hosted_style_request(false);
            }
            b = b.with_region(s3.region.clone().unwrap_or_else(|| "us-east-1".into()));
            if let Some(k) = &s3.access_key_id {
                b = b.with_access_key_id(k);
            }
            if let Some(s) = &s3.secret_access_key {
                b = b.with_secret_access_key(s);
            }
            let store: Arc<dyn ObjectStore> = Arc::new(b.build()?);
            let inner: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
                store
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(store, prefix.trim_matches('/')))
            };
            return Ok(Blobs { inner, kind: "s3", part_size: S3_PART });
        }
        let dir = url.strip_prefix("file://").unwrap_or(url);
        if dir.is_empty() {
            return Err(BlobError::Config("empty upload directory".into()));
        }
        std::fs::create_dir_all(dir).map_err(|e| BlobError::Config(format!("cannot create {dir:?}: {e}")))?;
        let fs = LocalFileSystem::new_with_prefix(dir)?.with_automatic_cleanup(true);
        Ok(Blobs { inner: Arc::new(fs), kind: "local", part_size: LOCAL_PART })
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Bytes buffered per part of a streamed put.
    pub fn part_size(&self) -> usize {
        self.part_size
    }

    fn path(key: &str) -> Result<Path> {
        Path::parse(key).map_err(|e| BlobError::Config(format!("bad key {key:?}: {e}")))
    }

    /// Stores a small object in one request.
    pub async fn put_bytes(&self, key: &str, bytes: Bytes) -> Result<()> {
        self.inner.put(&Self::path(key)?, PutPayload::from(bytes)).await?;
        Ok(())
    }

    /// Stores what `body` yields; returns the number of bytes. An object
    /// smaller than one part goes in one request, a larger one as a
    /// multipart upload of [`Self::part_size`] parts, at most two in flight,
    /// so memory per upload stays about three parts whatever the size. A
    /// failing `body` aborts the upload (nothing is left under `key`).
    pub async fn put_stream<S>(&self, key: &str, body: S) -> Result<u64>
    where
        S: Stream<Item = std::io::Result<Bytes>> + Send,
    {
        let path = Self::path(key)?;
        let mut body = std::pin::pin!(body);
        let mut first = bytes::BytesMut::new();
        let mut total = 0u64;
        // Gather the first part: a small object needs no multipart upload.
        while first.len() < self.part_size {
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk?;
                    total += chunk.len() as u64;
                    first.extend_from_slice(&chunk);
                }
                None => {
                    self.inner.put(&path, PutPayload::from(first.freeze())).await?;
                    return Ok(total);
                }
            }
        }
        let upload = self.inner.put_multipart(&path).await?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        w.put(first.freeze());
        loop {
            if let Err(e) = w.wait_for_capacity(MAX_IN_FLIGHT).await {
                return Err(e.into());
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    w.put(chunk);
                }
                Some(Err(e)) => {
                    if let Err(a) = w.abort().await {
                        tracing::warn!(error = %a, "aborting a multipart upload failed");
                    }
                    return Err(e.into());
                }
                None => break,
            }
        }
        w.finish().await?;
        Ok(total)
    }

    /// The object's size and its bytes as a stream.
    pub async fn get(&self, key: &str) -> Result<(u64, BoxStream<'static, std::io::Result<Bytes>>)> {
        match self.inner.get(&Self::path(key)?).await {
            Ok(r) => {
                let size = r.meta.size;
                Ok((size, r.into_stream().map_err(std::io::Error::other).boxed()))
            }
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes an object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.inner.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(n: usize, size: usize) -> impl Stream<Item = std::io::Result<Bytes>> {
        futures::stream::iter((0..n).map(move |i| Ok(Bytes::from(vec![(i % 251) as u8; size]))))
    }

    async fn read_all(b: &Blobs, key: &str) -> Vec<u8> {
        let (_, s) = b.get(key).await.unwrap();
        s.try_fold(Vec::new(), |mut acc, c| async move {
            acc.extend_from_slice(&c);
            Ok(acc)
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn local_small_and_multipart_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path().to_str().unwrap(), &S3Settings::default()).unwrap();
        assert_eq!(b.put_stream("a/small", chunks(3, 10)).await.unwrap(), 30);
        assert_eq!(read_all(&b, "a/small").await.len(), 30);
        // 40 chunks of 64 KiB: 10 parts of 256 KiB.
        let n = b.put_stream("a/big", chunks(40, 64 * 1024)).await.unwrap();
        assert_eq!(n, 40 * 64 * 1024);
        let got = read_all(&b, "a/big").await;
        assert_eq!(got.len() as u64, n);
        assert_eq!(got[64 * 1024 * 39], 39);
        b.delete("a/big").await.unwrap();
        b.delete("a/big").await.unwrap();
        assert!(matches!(b.get("a/big").await, Err(BlobError::NotFound)));
    }

    #[tokio::test]
    async fn a_failing_source_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = Blobs::open(dir.path().to_str().unwrap(), &S3Settings::default()).unwrap();
        let s = chunks(10, 64 * 1024).chain(futures::stream::iter([Err(std::io::Error::other("cut"))]));
        assert!(b.put_stream("x", s).await.is_err());
        assert!(matches!(b.get("x").await, Err(BlobError::NotFound)));
    }
}
