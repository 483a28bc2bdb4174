//! Photos: checking uploaded bytes are an image of an allowed format by their content (never by
//! Content-Type), decoding under dimension and allocation limits so a decompression bomb is
//! refused, and making the square thumbnails (centre crop, never upscaled). Thumbnails are made
//! on their first read and kept, so an upload costs one decode.

use crate::error::ScimError;
use crate::storage::PhotoSet;
use fast_image_resize::images::Image;
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageFormat, ImageReader, Limits};
use serde::Deserialize;
use std::io::Cursor;

/// Photo limits and thumbnail sizes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhotoConfig {
    /// Largest accepted upload in bytes (413 above).
    pub max_bytes: usize,
    /// Largest accepted width or height in pixels.
    pub max_dimension: u32,
    /// Largest decoder allocation in bytes.
    pub max_alloc: u64,
    pub small: u32,
    pub medium: u32,
    pub large: u32,
}

impl Default for PhotoConfig {
    fn default() -> Self {
        PhotoConfig {
            max_bytes: 10 * 1024 * 1024,
            max_dimension: 10_000,
            max_alloc: 512 * 1024 * 1024,
            small: 48,
            medium: 72,
            large: 300,
        }
    }
}

fn mime(f: ImageFormat) -> &'static str {
    match f {
        ImageFormat::Jpeg => "image/jpeg",
        ImageFormat::Png => "image/png",
        ImageFormat::Gif => "image/gif",
        _ => "image/webp",
    }
}

/// Checks and decodes `bytes`: the photo to store, its thumbnails not made yet (empty; they are
/// made on their first read by [`thumbnails`], off the upload's path).
pub fn process(bytes: &[u8], cfg: &PhotoConfig) -> Result<PhotoSet, ScimError> {
    let (format, _) = decode(bytes, cfg)?;
    Ok(PhotoSet {
        hash: blake3::hash(bytes).to_hex().to_string(),
        content_type: mime(format).to_string(),
        original: bytes.to_vec(),
        small: Vec::new(),
        medium: Vec::new(),
        large: Vec::new(),
        thumbnail_type: THUMBNAIL_TYPE.to_string(),
    })
}

/// The thumbnails' content type.
pub const THUMBNAIL_TYPE: &str = "image/jpeg";

/// The small, medium and large thumbnails of a stored original.
pub fn thumbnails(original: &[u8], cfg: &PhotoConfig) -> Result<[Vec<u8>; 3], ScimError> {
    let (_, img) = decode(original, cfg)?;
    let rgb = DynamicImage::ImageRgb8(img.to_rgb8());
    Ok([
        thumbnail(&rgb, cfg.small)?,
        thumbnail(&rgb, cfg.medium)?,
        thumbnail(&rgb, cfg.large)?,
    ])
}

/// Checks the format by content and decodes under the configured limits.
fn decode(bytes: &[u8], cfg: &PhotoConfig) -> Result<(ImageFormat, DynamicImage), ScimError> {
    let format = image::guess_format(bytes)
        .ok()
        .filter(|f| {
            matches!(
                f,
                ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::Gif | ImageFormat::WebP
            )
        })
        .ok_or_else(|| {
            ScimError::bad(
                "invalidValue",
                "the photo is not a JPEG, PNG, GIF or WebP image",
            )
        })?;
    if format == ImageFormat::Jpeg {
        return Ok((format, decode_jpeg(bytes, cfg)?));
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(cfg.max_dimension);
    limits.max_image_height = Some(cfg.max_dimension);
    limits.max_alloc = Some(cfg.max_alloc);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => ScimError::bad(
            "invalidValue",
            format!(
                "the photo is too large to decode (at most {0}x{0} pixels): {l}",
                cfg.max_dimension
            ),
        ),
        other => ScimError::bad(
            "invalidValue",
            format!("the photo cannot be decoded: {other}"),
        ),
    })?;
    Ok((format, img))
}

/// Decodes a JPEG strictly, as RGB: one cut or damaged anywhere (its scan data included) is
/// refused rather than shown with the missing part filled in.
fn decode_jpeg(bytes: &[u8], cfg: &PhotoConfig) -> Result<DynamicImage, ScimError> {
    use zune_core::bytestream::ZCursor;
    use zune_core::colorspace::ColorSpace;
    use zune_core::options::DecoderOptions;
    let bad = |e: zune_jpeg::errors::DecodeErrors| {
        ScimError::bad("invalidValue", format!("the photo cannot be decoded: {e}"))
    };
    let too_large = |w: usize, h: usize| {
        ScimError::bad(
            "invalidValue",
            format!(
                "the photo is too large to decode (at most {0}x{0} pixels): it is {w}x{h}",
                cfg.max_dimension
            ),
        )
    };
    let max = cfg.max_dimension as usize;
    let options = DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::RGB);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(bad)?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| ScimError::internal("JPEG dimensions after its headers"))?;
    if w > max || h > max || (w as u64) * (h as u64) * 3 > cfg.max_alloc {
        return Err(too_large(w, h));
    }
    let pixels = decoder.decode().map_err(bad)?;
    let img = image::RgbImage::from_raw(w as u32, h as u32, pixels).ok_or_else(|| {
        ScimError::bad(
            "invalidValue",
            "the photo cannot be decoded: its pixel data is short",
        )
    })?;
    Ok(DynamicImage::ImageRgb8(img))
}

fn thumbnail(img: &DynamicImage, size: u32) -> Result<Vec<u8>, ScimError> {
    let (w, h) = (img.width(), img.height());
    let side = w.min(h).max(1);
    let out = size.min(side).max(1);
    let left = f64::from((w - side.min(w)) / 2);
    let top = f64::from((h - side.min(h)) / 2);
    let mut dst = Image::new(out, out, PixelType::U8x3);
    let opts = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(
            fast_image_resize::FilterType::Lanczos3,
        ))
        .crop(left, top, f64::from(side), f64::from(side));
    Resizer::new()
        .resize(img, &mut dst, &opts)
        .map_err(ScimError::internal)?;
    let buf = image::RgbImage::from_raw(out, out, dst.into_vec())
        .ok_or_else(|| ScimError::internal("thumbnail buffer size"))?;
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode_image(&buf)
        .map_err(ScimError::internal)?;
    Ok(bytes)
}
