//! Images are decoded whole before they are accepted: a file that starts
//! like a PNG but is not one is refused (415), and the decode gives the
//! thumbnail. Runs on the blocking pool with a memory limit; the caller
//! bounds how many run at once (`State::image_slots`).

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// Longest side of a thumbnail.
pub const THUMB_SIDE: u32 = 320;
/// Largest image side accepted (a 10 MiB PNG can claim 100,000 x 100,000).
const MAX_SIDE: u32 = 12_000;
/// Most memory one decode may take.
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// A verified image.
#[derive(Debug)]
pub struct Verified {
    pub width: u32,
    pub height: u32,
    /// The thumbnail's bytes and content type (JPEG, or PNG when the image
    /// has transparency).
    pub thumb: Vec<u8>,
    pub thumb_type: &'static str,
}

/// Decodes the file at `path` as `format`; `Err` with a plain reason when it is not one.
pub fn verify(path: &Path, format: ImageFormat) -> Result<Verified, String> {
    let name = format!("{format:?}").to_uppercase();
    let mut reader = ImageReader::open(path).map_err(|e| format!("cannot read the upload: {e}"))?;
    reader.set_format(format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(_) => format!("the {name} image is too large (at most {MAX_SIDE} pixels a side)"),
        _ => format!("the file is not a valid {name} image"),
    })?;
    let (width, height) = (img.width(), img.height());
    let small = img.thumbnail(THUMB_SIDE, THUMB_SIDE);
    drop(img);
    let (thumb, thumb_type) = encode_thumb(small).map_err(|e| format!("thumbnail: {e}"))?;
    Ok(Verified { width, height, thumb, thumb_type })
}

fn encode_thumb(img: DynamicImage) -> image::ImageResult<(Vec<u8>, &'static str)> {
    let mut out = Cursor::new(Vec::new());
    if img.color().has_alpha() {
        img.to_rgba8().write_to(&mut out, ImageFormat::Png)?;
        Ok((out.into_inner(), "image/png"))
    } else {
        img.to_rgb8().write_to(&mut out, ImageFormat::Jpeg)?;
        Ok((out.into_inner(), "image/jpeg"))
    }
}
