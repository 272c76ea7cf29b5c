//! What an upload is, judged from its first bytes, never from its name or
//! the client's `Content-Type`.

/// Bytes of the start of a file that [`sniff`] looks at.
pub const HEAD_BYTES: usize = 8 * 1024;

/// The content type of a file starting with `head` (at most
/// [`HEAD_BYTES`]; `complete` when that is the whole file). Markup that a
/// browser would run (HTML, SVG, XML) is named as such, so it is refused
/// unless `CHAT_UPLOAD_TYPES` allows it; other UTF-8 text without control
/// characters is `text/plain`; anything else unknown is
/// `application/octet-stream`.
pub fn sniff(head: &[u8], complete: bool) -> &'static str {
    if let Some(t) = infer::get(head) {
        return match t.mime_type() {
            "image/jpeg" => "image/jpeg",
            "image/png" => "image/png",
            "image/webp" => "image/webp",
            "image/gif" => "image/gif",
            "application/pdf" => "application/pdf",
            "text/html" => "text/html",
            "text/xml" => if has_svg(head) { "image/svg+xml" } else { "text/xml" },
            _ => "application/octet-stream",
        };
    }
    if !is_text(head, complete) {
        return "application/octet-stream";
    }
    if has_svg(head) {
        return "image/svg+xml";
    }
    if looks_like_html(head) {
        return "text/html";
    }
    "text/plain"
}

/// UTF-8 (a sequence cut at the end of an incomplete head is fine) with no
/// control characters but tab, newline, carriage return and form feed.
fn is_text(head: &[u8], complete: bool) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(_) => head,
        // Cut in the middle of a character at the end of the head: fine.
        Err(e) if e.error_len().is_none() && !complete => &head[..e.valid_up_to()],
        Err(_) => return false,
    };
    !valid.iter().any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0c) || b == 0x7f)
}

fn lower(head: &[u8]) -> String {
    String::from_utf8_lossy(head).to_ascii_lowercase()
}

fn has_svg(head: &[u8]) -> bool {
    lower(head).contains("<svg")
}

/// Markup a browser would render as a page if it sniffed: the tags that
/// start a page or run script (what WHATWG's sniffing table looks for).
fn looks_like_html(head: &[u8]) -> bool {
    let l = lower(head);
    ["<!doctype html", "<html", "<script", "<head", "<body", "<iframe", "<object", "<embed", "<meta", "<img", "<a ", "<?xml"]
        .iter()
        .any(|t| l.contains(t))
}

/// Image types the gateway can decode (verify) and thumbnail.
pub fn image_format(content_type: &str) -> Option<image::ImageFormat> {
    Some(match content_type {
        "image/jpeg" => image::ImageFormat::Jpeg,
        "image/png" => image::ImageFormat::Png,
        "image/webp" => image::ImageFormat::WebP,
        "image/gif" => image::ImageFormat::Gif,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_content_not_name() {
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", false), "image/png");
        assert_eq!(sniff(b"%PDF-1.7\n", false), "application/pdf");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\0\x10JFIF", false), "image/jpeg");
        assert_eq!(sniff("hello, receipt total 12€\n".as_bytes(), true), "text/plain");
        assert_eq!(sniff(b"<html><script>alert(1)</script>", true), "text/html");
        assert_eq!(sniff(b"  <p>hi</p><script>x()</script>", true), "text/html");
        assert_eq!(sniff(br#"<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>"#, true), "image/svg+xml");
        assert_eq!(sniff(b"<?xml version=\"1.0\"?><svg></svg>", true), "image/svg+xml");
        assert_eq!(sniff(b"MZ\x90\0\x03\0\0\0", true), "application/octet-stream");
        assert_eq!(sniff(b"abc\0def", true), "application/octet-stream");
        // A head cut inside a multi-byte character is still text; a whole file so cut is not.
        let cut = &"é".as_bytes()[..1];
        assert_eq!(sniff(&[b"ok ".as_slice(), cut].concat(), false), "text/plain");
        assert_eq!(sniff(&[b"ok ".as_slice(), cut].concat(), true), "application/octet-stream");
    }
}
