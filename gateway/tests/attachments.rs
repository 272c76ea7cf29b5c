//! Attachments end to end against real gateways, workers, Redis and
//! SQLite/PostgreSQL: upload, send, live on another gateway, history,
//! previews and reply quotes, edit and delete, downloads with their
//! authorization and headers, signed links, every refusal (413, 415,
//! forged image, someone else's upload), the sweep of unused uploads, the
//! S3 store against a real S3-compatible server (`s3s-fs`), and the
//! gateway's memory while large files stream through.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{uuid, Db, Stack};
use serde_json::{json, Value};

// ---------------------------------------------------------------- helpers

/// A real PNG of `w` x `h` pixels (a gradient, so it does not compress to nothing).
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn pdf() -> Vec<u8> {
    b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n".to_vec()
}

/// A `multipart/form-data` body with one field `name`; returns (content type, body).
fn form(field: &str, filename: &str, bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("b{}", uuid().replace('-', ""));
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n").as_bytes());
    body.extend_from_slice(
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

struct Reply {
    status: u16,
    body: Value,
}

async fn upload_to(s: &Stack, g: usize, token: &str, filename: &str, bytes: &[u8]) -> Reply {
    let (ct, body) = form("file", filename, bytes);
    let r = s
        .http
        .post(format!("{}/api/attachments", s.url(g)))
        .bearer_auth(token)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    Reply { status, body: r.json().await.unwrap_or(Value::Null) }
}

async fn upload(s: &Stack, token: &str, filename: &str, bytes: &[u8]) -> Reply {
    upload_to(s, 0, token, filename, bytes).await
}

/// Uploads that must succeed; returns the attachment.
async fn uploaded(s: &Stack, token: &str, filename: &str, bytes: &[u8]) -> Value {
    let r = upload(s, token, filename, bytes).await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body
}

/// GET with an optional bearer token: (status, headers, bytes).
async fn fetch(s: &Stack, g: usize, path: &str, token: Option<&str>) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut rq = s.http.get(format!("{}{}", s.url(g), path));
    if let Some(t) = token {
        rq = rq.bearer_auth(t);
    }
    let r = rq.send().await.unwrap();
    let st = r.status().as_u16();
    let h = r.headers().clone();
    (st, h, r.bytes().await.unwrap().to_vec())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Sends a message with attachments; returns the reply (ack or error).
async fn send_files(c: &mut common::Client, conv: &str, text: &str, ids: &[&str]) -> Value {
    let rid = uuid();
    send_files_as(c, conv, text, ids, &rid).await
}

async fn send_files_as(c: &mut common::Client, conv: &str, text: &str, ids: &[&str], client_id: &str) -> Value {
    let rid = uuid();
    c.send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":client_id,"text":text,"attachments":ids})).await;
    c.reply(&rid).await
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else { return out };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Blobs of uploaded files (not thumbnails) in a local store.
fn stored_files(s: &Stack) -> Vec<PathBuf> {
    files_under(&s.dir.join("uploads").join("files"))
}

// ---------------------------------------------------------------- the vertical slice

/// A customer sends a photo, the agent on the other gateway sees it live
/// with its thumbnail, history and the chat list carry it, a reply quotes
/// "Photo"; the agent sends a PDF; downloads are authorised and safe; an
/// edit keeps the files and a delete removes them.
async fn photo_and_pdf_round_trip(db: Db) {
    let s = Stack::start(2, 1, db).await;
    let agent_tok = s.agent_token().await;
    let (cust_tok, conv) = s.customer("rita").await;
    let (other_tok, _) = s.customer("mallory").await;
    let mut agent = s.ws(1, &agent_tok).await;
    agent.watch(&conv, 0).await;
    let mut cust = s.ws(0, &cust_tok).await;

    let photo = png(640, 480);
    let a = uploaded(&s, &cust_tok, "../../wrong order.png", &photo).await;
    let id = a["id"].as_str().unwrap().to_string();
    assert_eq!(a["name"], "wrong order.png", "the path is not part of the name");
    assert_eq!(a["content_type"], "image/png");
    assert_eq!(a["size"], photo.len() as u64);
    assert_eq!((a["width"].as_u64(), a["height"].as_u64()), (Some(640), Some(480)));
    assert_eq!(a["url"], format!("/api/attachments/{id}"));
    assert_eq!(a["thumbnail_url"], format!("/api/attachments/{id}/thumbnail"));

    // Sent without text: the agent on gateway 1 gets it live, with the metadata.
    let ack = send_files(&mut cust, &conv, "", &[&id]).await;
    assert_eq!(ack["type"], "ack", "{ack}");
    let seq = ack["seq"].as_u64().unwrap();
    let live = agent.expect(|f| f["type"] == "message" && f["message"]["attachments"].is_array()).await;
    assert_eq!(live["message"]["seq"], seq);
    assert_eq!(live["message"]["text"], "");
    assert_eq!(live["message"]["attachments"][0], a);

    // A second tab of the customer resuming from before it gets it from the replay stream, files included.
    let mut tab = s.ws(1, &cust_tok).await;
    tab.send(json!({"type":"resume","positions":{conv.as_str(): seq - 1}})).await;
    let replayed = tab.expect(|f| f["type"] == "message" && f["message"]["seq"] == seq).await;
    assert_eq!(replayed["message"]["attachments"][0], a);

    // The agent's thumbnail (bearer) and the full photo through a signed link (no token).
    let (st, h, thumb) = fetch(&s, 1, &format!("/api/attachments/{id}/thumbnail"), Some(&agent_tok)).await;
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-type"), "image/jpeg");
    let t = image::load_from_memory(&thumb).unwrap();
    assert_eq!((t.width(), t.height()), (320, 240));
    let (st, link) = s.get(1, &format!("/api/attachments/{id}/link"), &agent_tok).await;
    assert_eq!(st, 200, "{link}");
    let url = link["url"].as_str().unwrap();
    let (st, h, bytes) = fetch(&s, 0, url, None).await;
    assert_eq!(st, 200);
    assert_eq!(bytes, photo);
    assert_eq!(header(&h, "content-type"), "image/png");
    assert!(header(&h, "content-disposition").starts_with("inline"), "{h:?}");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert!(header(&h, "content-security-policy").contains("sandbox"), "{h:?}");
    // A link is for that file and variant only, and cannot be altered.
    let (st, _, _) = fetch(&s, 0, &url.replace("sig=", "sig=00"), None).await;
    assert_eq!(st, 404);
    let thumb_url = link["thumbnail_url"].as_str().unwrap();
    let (st, _, _) = fetch(&s, 0, &thumb_url.replace("/thumbnail?", "?"), None).await;
    assert_eq!(st, 404, "a thumbnail's link does not open the file");
    let (st, _, _) = fetch(&s, 0, &format!("/api/attachments/{id}"), None).await;
    assert_eq!(st, 401, "no token, no link: refused");

    // Another customer: as if it did not exist, by token and for a link.
    let (st, _, _) = fetch(&s, 0, &format!("/api/attachments/{id}"), Some(&other_tok)).await;
    assert_eq!(st, 404);
    let (st, body) = s.get(0, &format!("/api/attachments/{id}/link"), &other_tok).await;
    assert_eq!((st, body["error"]["code"].as_str()), (404, Some("not_found")));

    // The chat list says "Photo"; history carries the metadata.
    s.list_until("", &agent_tok, |v| v["items"].as_array().unwrap().iter().any(|r| r["id"] == conv.as_str() && r["preview"] == "Photo"))
        .await;
    let hist = s.history_until(&conv, &cust_tok, |items| items.iter().any(|m| m["seq"] == seq)).await;
    let m = hist.iter().find(|m| m["seq"] == seq).unwrap();
    assert_eq!(m["attachments"][0], a);

    // The agent replies to the photo (quoted "Photo") with a PDF.
    let menu = pdf();
    let f = uploaded(&s, &agent_tok, "menu.pdf", &menu).await;
    let fid = f["id"].as_str().unwrap().to_string();
    assert_eq!(f["content_type"], "application/pdf");
    assert!(f["thumbnail_url"].is_null());
    let rid = uuid();
    agent
        .send(json!({"type":"send","rid":rid,"conversation":conv,"client_id":uuid(),"text":"Here is our menu","reply_to":seq,"attachments":[fid]}))
        .await;
    let ack2 = agent.reply(&rid).await;
    assert_eq!(ack2["type"], "ack", "{ack2}");
    let got = cust.expect(|f| f["type"] == "message" && f["message"]["seq"] == ack2["seq"]).await;
    assert_eq!(got["message"]["reply_to"]["excerpt"], "Photo");
    assert_eq!(got["message"]["attachments"][0]["name"], "menu.pdf");
    // The customer may read it (its conversation); it downloads, never renders.
    let (st, h, bytes) = fetch(&s, 0, &format!("/api/attachments/{fid}"), Some(&cust_tok)).await;
    assert_eq!(st, 200);
    assert_eq!(bytes, menu);
    assert_eq!(header(&h, "content-disposition"), "attachment; filename=\"menu.pdf\"; filename*=UTF-8''menu.pdf");
    let (st, _, _) = fetch(&s, 0, &format!("/api/attachments/{fid}"), Some(&other_tok)).await;
    assert_eq!(st, 404);

    // Edit keeps the photo; the customer's delete removes it for everyone.
    let rid = uuid();
    cust.send(json!({"type":"edit","rid":rid,"conversation":conv,"seq":seq,"text":"the wrong order"})).await;
    assert_eq!(cust.reply(&rid).await["type"], "ack");
    s.history_until(&conv, &agent_tok, |items| {
        items.iter().any(|m| m["seq"] == seq && m["text"] == "the wrong order" && m["attachments"][0]["id"] == id.as_str())
    })
    .await;
    let rid = uuid();
    cust.send(json!({"type":"delete","rid":rid,"conversation":conv,"seq":seq})).await;
    assert_eq!(cust.reply(&rid).await["type"], "ack");
    agent.expect(|f| f["type"] == "deleted" && f["seq"] == seq).await;
    s.history_until(&conv, &agent_tok, |items| items.iter().any(|m| m["seq"] == seq && m["deleted"] == true && m["attachments"].is_null()))
        .await;
    // Once the worker recorded the delete, the file is gone for everyone, links included.
    let mut gone = false;
    for _ in 0..100 {
        if fetch(&s, 0, &format!("/api/attachments/{id}"), Some(&cust_tok)).await.0 == 404 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "a deleted message's photo still downloads");
    assert_eq!(fetch(&s, 0, url, None).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_and_pdf_round_trip_sqlite() {
    photo_and_pdf_round_trip(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn photo_and_pdf_round_trip_postgres() {
    photo_and_pdf_round_trip(Db::Postgres).await;
}

// ---------------------------------------------------------------- refusals

/// Every limit and refusal, and that a refused upload stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    let s = Stack::new(Db::Sqlite).await.env("CHAT_MAX_UPLOAD_BYTES", "100000").spawn(1, 1).await;
    let agent_tok = s.agent_token().await;
    let (ann_tok, ann) = s.customer("ann").await;
    let (bob_tok, bob) = s.customer("bob").await;

    // Over the limit: 413, whether the length is declared up front or not.
    let big = vec![b'a'; 100_001];
    let r = upload(&s, &ann_tok, "big.txt", &big).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (413, Some("too_large")), "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("100000"), "{}", r.body);
    let r = upload(&s, &ann_tok, "huge.txt", &vec![b'a'; 400_000]).await;
    assert_eq!(r.status, 413, "{}", r.body);
    // Exactly at the limit is fine.
    assert_eq!(upload(&s, &ann_tok, "edge.txt", &vec![b'a'; 100_000]).await.status, 201);

    // Not an allowed type (by content, whatever the name says): 415.
    let exe = [b"MZ\x90\0\x03\0\0\0\x04\0\0\0\xff\xff".as_slice(), &[0u8; 64]].concat();
    let r = upload(&s, &ann_tok, "photo.png", &exe).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (415, Some("unsupported_type")), "{}", r.body);
    // Markup a browser would run is refused by default, even named .txt.
    let r = upload(&s, &ann_tok, "notes.txt", b"<html><script>alert(document.cookie)</script></html>").await;
    assert_eq!(r.status, 415, "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("text/html"), "{}", r.body);
    let r = upload(&s, &ann_tok, "logo.svg", br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"></svg>"#).await;
    assert_eq!(r.status, 415, "{}", r.body);
    // A forged image: PNG magic, then garbage.
    let mut forged = b"\x89PNG\r\n\x1a\n".to_vec();
    forged.extend(std::iter::repeat_n(0x41, 5000));
    let r = upload(&s, &ann_tok, "receipt.png", &forged).await;
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (415, Some("unsupported_type")), "{}", r.body);
    assert!(r.body["error"]["message"].as_str().unwrap().contains("not a valid PNG"), "{}", r.body);
    // A real PNG cut in half does not decode either.
    let p = png(200, 200);
    assert_eq!(upload(&s, &ann_tok, "cut.png", &p[..p.len() / 2]).await.status, 415);

    // Malformed requests: 400; no token: 401.
    assert_eq!(upload(&s, &ann_tok, "empty.txt", b"").await.status, 400);
    let r = s.http.post(format!("{}/api/attachments", s.url(0))).bearer_auth(&ann_tok).body("plain").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let (ct, body) = form("other", "x.txt", b"hello");
    let r = s.http.post(format!("{}/api/attachments", s.url(0))).bearer_auth(&ann_tok).header("content-type", ct).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400, "no field `file`");
    let (ct, body) = form("file", "x.txt", b"hello");
    let r = s.http.post(format!("{}/api/attachments", s.url(0))).header("content-type", ct).body(body).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Nothing refused was stored: one file (the one at the limit).
    assert_eq!(stored_files(&s).len(), 1, "{:?}", stored_files(&s));

    // Someone else's upload cannot be attached: not found, nothing sent.
    let mine = uploaded(&s, &ann_tok, "receipt.png", &png(40, 30)).await;
    let mine = mine["id"].as_str().unwrap().to_string();
    let mut bob_ws = s.ws(0, &bob_tok).await;
    let r = send_files(&mut bob_ws, &bob, "look", &[&mine]).await;
    assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("not_found")), "{r}");
    let mut agent = s.ws(0, &agent_tok).await;
    let r = send_files(&mut agent, &ann, "", &[&mine]).await;
    assert_eq!(r["code"], "not_found", "an agent cannot send a customer's upload: {r}");
    // An unsent upload is its uploader's alone: another customer and agents get 404.
    assert_eq!(fetch(&s, 0, &format!("/api/attachments/{mine}"), Some(&bob_tok)).await.0, 404);
    assert_eq!(fetch(&s, 0, &format!("/api/attachments/{mine}"), Some(&agent_tok)).await.0, 404);
    assert_eq!(fetch(&s, 0, &format!("/api/attachments/{mine}"), Some(&ann_tok)).await.0, 200);
    // Only into a conversation the sender may write to.
    let mut ann_ws = s.ws(0, &ann_tok).await;
    let r = send_files(&mut ann_ws, &bob, "", &[&mine]).await;
    assert_eq!(r["code"], "forbidden", "{r}");
    // The owner sends it; a retry of that send is the same message; another message cannot reuse it.
    let cid = uuid();
    let first = send_files_as(&mut ann_ws, &ann, "", &[&mine], &cid).await;
    assert_eq!(first["type"], "ack", "{first}");
    let again = send_files_as(&mut ann_ws, &ann, "", &[&mine], &cid).await;
    assert_eq!((again["seq"].clone(), again["duplicate"].clone()), (first["seq"].clone(), json!(true)), "{again}");
    let reuse = send_files(&mut ann_ws, &ann, "", &[&mine]).await;
    assert_eq!(reuse["code"], "not_found", "{reuse}");
    // An unknown id, a malformed one, too many, text empty without files.
    let r = send_files(&mut ann_ws, &ann, "x", &["0123456789abcdef0123456789abcdef"]).await;
    assert_eq!(r["code"], "not_found");
    let r = send_files(&mut ann_ws, &ann, "x", &["../../etc/passwd"]).await;
    assert_eq!(r["code"], "invalid");
    let eleven: Vec<String> = (0..11).map(|i| format!("{i:032x}")).collect();
    let r = send_files(&mut ann_ws, &ann, "x", &eleven.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(r["code"], "too_large");
    let r = send_files(&mut ann_ws, &ann, "", &[]).await;
    assert_eq!(r["code"], "invalid");
    // Bob, who may not read ann's conversation, still cannot download the sent photo.
    assert_eq!(fetch(&s, 0, &format!("/api/attachments/{mine}"), Some(&bob_tok)).await.0, 404);
    assert_eq!(fetch(&s, 0, &format!("/api/attachments/{mine}"), Some(&agent_tok)).await.0, 200);
    // Ids that are not upload ids are simply not found.
    assert_eq!(fetch(&s, 0, "/api/attachments/..%2F..%2Fetc", Some(&agent_tok)).await.0, 404);
}

/// An upload never sent is removed (row and blob) after
/// `CHAT_UPLOAD_UNUSED_SECS`; a sent one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_uploads_are_swept() {
    let s = Stack::new(Db::Sqlite)
        .await
        .env("CHAT_UPLOAD_UNUSED_SECS", "2")
        .env("CHAT_UPLOAD_SWEEP_SECS", "1")
        .spawn(1, 1)
        .await;
    let (tok, conv) = s.customer("sam").await;
    let unused = uploaded(&s, &tok, "a.txt", b"never sent").await["id"].as_str().unwrap().to_string();
    let sent = uploaded(&s, &tok, "b.txt", b"sent").await["id"].as_str().unwrap().to_string();
    let mut ws = s.ws(0, &tok).await;
    assert_eq!(send_files(&mut ws, &conv, "", &[&sent]).await["type"], "ack");
    assert_eq!(stored_files(&s).len(), 2);
    let mut swept = false;
    for _ in 0..100 {
        if fetch(&s, 0, &format!("/api/attachments/{unused}"), Some(&tok)).await.0 == 404 && stored_files(&s).len() == 1 {
            swept = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(swept, "the unused upload is still there: {:?}", stored_files(&s));
    // Past the window again, the sent one is still there.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (st, _, bytes) = fetch(&s, 0, &format!("/api/attachments/{sent}"), Some(&tok)).await;
    assert_eq!((st, bytes.as_slice()), (200, b"sent".as_slice()));
    // And it cannot be sent any more (it no longer exists).
    let r = send_files(&mut ws, &conv, "", &[&unused]).await;
    assert_eq!(r["code"], "not_found");
}

// ---------------------------------------------------------------- S3

/// `s3s-fs` (an S3 API over a directory, from crates.io; `scripts/lib.sh`
/// installs it): on PATH, or in cargo's bin directory.
fn s3s_fs() -> Option<PathBuf> {
    let home = std::env::var("CARGO_HOME").map(PathBuf::from).unwrap_or_else(|_| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cargo"));
    let candidates = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .map(|d| Path::new(d).join("s3s-fs"))
        .chain(std::iter::once(home.join("bin").join("s3s-fs")))
        .collect::<Vec<_>>();
    candidates.into_iter().find(|p| p.is_file())
}

struct S3Server {
    child: std::process::Child,
    root: tempfile::TempDir,
    endpoint: String,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_s3(bucket: &str) -> Option<S3Server> {
    let Some(bin) = s3s_fs() else {
        eprintln!("SKIPPED: the S3 test needs the `s3s-fs` binary (cargo install s3s-fs@0.14.1 --features binary --locked; scripts/lib.sh does it)");
        return None;
    };
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join(bucket)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new(bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--access-key", "testkey", "--secret-key", "testsecret"])
        .arg(root.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start s3s-fs");
    let endpoint = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Some(S3Server { child, root, endpoint });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("s3s-fs did not listen on {endpoint}");
}

/// Two gateways on one S3 bucket: a file uploaded through one (large
/// enough for a multipart upload) downloads whole through the other, with
/// its thumbnail, and is in the bucket under the configured prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_store_shared_by_two_gateways() {
    let Some(s3) = start_s3("chat-bucket").await else { return };
    let s = Stack::new(Db::Sqlite)
        .await
        .env("CHAT_UPLOAD_URL", "s3://chat-bucket/uploads")
        .env("CHAT_S3_ENDPOINT", &s3.endpoint)
        .env("CHAT_S3_ACCESS_KEY_ID", "testkey")
        .env("CHAT_S3_SECRET_ACCESS_KEY", "testsecret")
        .env("CHAT_S3_ALLOW_HTTP", "1")
        .spawn(2, 1)
        .await;
    let (tok, conv) = s.customer("sia").await;
    let agent_tok = s.agent_token().await;
    // 7 MiB of text: two parts of a multipart upload (5 MiB parts on S3).
    let text: Vec<u8> = (0..7 * 1024 * 1024).map(|i| b"receipt line\n"[i % 13]).collect();
    let r = upload_to(&s, 0, &tok, "long receipt.txt", &text).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let big = r.body["id"].as_str().unwrap().to_string();
    let photo = png(500, 300);
    let p = upload_to(&s, 1, &tok, "p.png", &photo).await;
    assert_eq!(p.status, 201, "{}", p.body);
    let pid = p.body["id"].as_str().unwrap().to_string();
    let mut ws = s.ws(0, &tok).await;
    assert_eq!(send_files(&mut ws, &conv, "both", &[&big, &pid]).await["type"], "ack");
    let (st, h, bytes) = fetch(&s, 1, &format!("/api/attachments/{big}"), Some(&agent_tok)).await;
    assert_eq!(st, 200);
    assert_eq!(header(&h, "content-type"), "text/plain; charset=utf-8");
    assert!(bytes == text, "the file came back different ({} bytes)", bytes.len());
    let (st, _, thumb) = fetch(&s, 0, &format!("/api/attachments/{pid}/thumbnail"), Some(&agent_tok)).await;
    assert_eq!(st, 200);
    assert_eq!(image::load_from_memory(&thumb).unwrap().width(), 320);
    // In the bucket, under the prefix; nothing in a local directory.
    let in_bucket = files_under(&s3.root.path().join("chat-bucket").join("uploads"));
    assert!(in_bucket.iter().any(|p| p.ends_with(&big)), "{in_bucket:?}");
    assert!(in_bucket.iter().any(|p| p.to_string_lossy().contains(&format!("thumbs/{}/{pid}", &pid[..2]))), "{in_bucket:?}");
    assert!(stored_files(&s).is_empty());
}

// ---------------------------------------------------------------- memory

fn status_kb(pid: u32, field: &str) -> u64 {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    st.lines().find(|l| l.starts_with(field)).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Uploads stream to the store: 4 concurrent uploads of 24 MiB each (96
/// MiB in all, with the limit raised to 32 MiB) raise the gateway's peak
/// RSS by a few MiB, not by the files' size (BENCHMARKS.md, "Uploads").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_memory_stays_flat() {
    let s = Stack::new(Db::Sqlite).await.env("CHAT_MAX_UPLOAD_BYTES", &(32 * 1024 * 1024).to_string()).spawn(1, 1).await;
    let (tok, _) = s.customer("mona").await;
    let pid = s.gateways[0].child.id();
    // Warm up (first request paths, the store's connections).
    uploaded(&s, &tok, "w.txt", b"warm up").await;
    let before = status_kb(pid, "VmHWM");
    let rss_before = status_kb(pid, "VmRSS");
    let size = 24 * 1024 * 1024;
    let text: Vec<u8> = (0..size).map(|i| b"0123456789abcdef\n"[i % 17]).collect();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (ct, body) = form("file", &format!("f{i}.txt"), &text);
            let http = s.http.clone();
            let url = format!("{}/api/attachments", s.url(0));
            let tok = tok.clone();
            tokio::spawn(async move {
                let r = http.post(url).bearer_auth(tok).header("content-type", ct).body(body).send().await.unwrap();
                r.status().as_u16()
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let grown = status_kb(pid, "VmHWM").saturating_sub(before);
    eprintln!("uploads: 4 x 24 MiB at once; gateway RSS before {rss_before} kB, peak RSS grew {grown} kB");
    // Buffered whole, 96 MiB would have been held at once; streamed, a few parts per upload.
    assert!(grown < 40 * 1024, "peak RSS grew {grown} kB while 96 MiB streamed through");
    assert_eq!(stored_files(&s).len(), 5);
}
