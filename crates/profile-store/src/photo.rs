//! Photos: checking uploaded bytes are an image of an allowed format by their content (never by
//! Content-Type), decoding under dimension and memory limits so a decompression bomb is refused,
//! and making the square thumbnails (centre crop, never upscaled).
//!
//! Decoding memory is bounded per server, not only per upload: [`inspect`] reads an image's
//! headers alone and says how much memory decoding it and making its thumbnails will take (its
//! [`Declared::cost`], from the declared width, height and pixel format); a photo whose cost is
//! above what one photo may take is refused before anything is decoded, and every other one
//! waits for that much room in the server's [`DecodeBudget`] (a semaphore counting KiB) before
//! it is decoded. The thumbnails are made from the decoded image at upload, once, so serving
//! them never decodes the original again.

use crate::error::ScimError;
use crate::storage::PhotoSet;
use fast_image_resize::{ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use serde::Deserialize;
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

const MIB: u64 = 1024 * 1024;

/// Photo limits and thumbnail sizes.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhotoConfig {
    /// Largest accepted upload in bytes (413 above).
    pub max_bytes: usize,
    /// Largest accepted width or height in pixels.
    pub max_dimension: u32,
    /// The most memory, in bytes, one photo may take to decode and thumbnail (400 above);
    /// default, and at most: `decode_budget`.
    pub max_alloc: Option<u64>,
    /// The memory, in bytes, all the photos being decoded at one time may take together,
    /// server-wide.
    pub decode_budget: u64,
    /// How long, in seconds, an upload waits for room in `decode_budget` before it is answered
    /// 503 with `Retry-After`. Less than the request timeout.
    pub decode_wait_secs: u64,
    pub small: u32,
    pub medium: u32,
    pub large: u32,
}

impl Default for PhotoConfig {
    fn default() -> Self {
        PhotoConfig {
            max_bytes: 10 * 1024 * 1024,
            max_dimension: 10_000,
            max_alloc: None,
            decode_budget: 256 * MIB,
            decode_wait_secs: 10,
            small: 48,
            medium: 72,
            large: 300,
        }
    }
}

impl PhotoConfig {
    /// The most memory one photo may take: `max_alloc`, never more than the whole budget.
    pub fn photo_limit(&self) -> u64 {
        self.max_alloc
            .map_or(self.decode_budget, |m| m.min(self.decode_budget))
    }

    /// Settings that cannot work, named by their keys.
    pub fn check(&self, request_timeout_secs: u64) -> Result<(), String> {
        self.fault(request_timeout_secs).map_err(|f| f.message)
    }

    /// The first setting that cannot work: its key (a dotted path, so a configuration file can
    /// point at its line) and what is wrong.
    pub fn fault(&self, request_timeout_secs: u64) -> Result<(), crate::ConfigFault> {
        let fault = |key: &'static str, message: String| Err(crate::ConfigFault { key, message });
        if self.decode_budget < MIB {
            return fault(
                "photos.decode_budget",
                format!(
                    "photos.decode_budget = {} is less than 1 MiB (1048576): no photo could be decoded",
                    self.decode_budget
                ),
            );
        }
        if self.max_alloc.is_some_and(|m| m < MIB) {
            return fault(
                "photos.max_alloc",
                format!(
                    "photos.max_alloc = {} is less than 1 MiB (1048576): no photo could be decoded",
                    self.max_alloc.unwrap_or_default()
                ),
            );
        }
        if self.decode_wait_secs >= request_timeout_secs.max(1) {
            return fault(
                "photos.decode_wait_secs",
                format!(
                    "photos.decode_wait_secs = {} must be less than request_timeout_secs = {} (an \
                     upload waiting that long would be answered 408, not 503 with Retry-After)",
                    self.decode_wait_secs, request_timeout_secs
                ),
            );
        }
        if let Some(key) = [
            ("photos.small", self.small),
            ("photos.medium", self.medium),
            ("photos.large", self.large),
        ]
        .into_iter()
        .find_map(|(k, v)| (v == 0).then_some(k))
        {
            return fault(
                key,
                "photos.small, medium and large must be at least 1 pixel".into(),
            );
        }
        Ok(())
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

/// The thumbnails' content type.
pub const THUMBNAIL_TYPE: &str = "image/jpeg";

/// What an image's headers declare, read before anything is decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Declared {
    pub format: ImageFormat,
    pub width: u32,
    pub height: u32,
    /// Bytes of memory decoding the image and making its thumbnails takes at most: the decoded
    /// pixels, the decoder's own work buffers and the resizer's.
    pub cost: u64,
}

/// Reads the format (by content) and the headers of `bytes`, and refuses with 400
/// `invalidValue` what is not an image of an allowed format, what is wider or taller than
/// `max_dimension`, and what would take more memory to decode than one photo may.
pub fn inspect(bytes: &[u8], cfg: &PhotoConfig) -> Result<Declared, ScimError> {
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
    let (width, height, decoded) = if format == ImageFormat::Jpeg {
        jpeg_headers(bytes)?
    } else {
        // The dimensions are checked below, with a message naming the setting.
        let mut headers = reader(bytes, format, cfg);
        headers.limits({
            let mut l = Limits::default();
            l.max_alloc = Some(cfg.photo_limit());
            l
        });
        let decoder = headers.into_decoder().map_err(image_error)?;
        let (w, h) = decoder.dimensions();
        let pixels = u64::from(w) * u64::from(h);
        let total = decoder.total_bytes();
        // Besides the decoded image: a GIF frame not covering the whole screen is decoded
        // apart and its indices kept; an animated WebP composes the first frame on a canvas
        // of its own, and a lossy one keeps its YUV planes.
        let work = match format {
            ImageFormat::Gif => total + pixels,
            ImageFormat::WebP => 2 * total + 2 * pixels,
            // Two rows and the inflater's window.
            _ => 2 * u64::from(w) * u64::from(decoder.color_type().bytes_per_pixel()),
        };
        (
            w,
            h,
            Decoded {
                pixels: total,
                bytes_per_pixel: u64::from(decoder.color_type().bytes_per_pixel()),
                work,
            },
        )
    };
    if width > cfg.max_dimension || height > cfg.max_dimension {
        return Err(too_large(format!(
            "it is {width}x{height} pixels, above photos.max_dimension ({0}x{0})",
            cfg.max_dimension
        )));
    }
    let cost = decoded.pixels + decoded.work + thumbnail_cost(width, height, decoded, cfg) + MIB;
    let limit = cfg.photo_limit();
    if cost > limit {
        return Err(too_large(format!(
            "{width}x{height} pixels take {} MiB to decode, more than the {} MiB one photo may \
             take ({})",
            cost.div_ceil(MIB),
            limit / MIB,
            if cfg.max_alloc.is_some_and(|m| m < cfg.decode_budget) {
                "photos.max_alloc"
            } else {
                "photos.decode_budget"
            }
        )));
    }
    Ok(Declared {
        format,
        width,
        height,
        cost,
    })
}

/// The memory a decode takes, as its headers declare it.
#[derive(Clone, Copy, Debug)]
struct Decoded {
    /// The decoded image's bytes.
    pixels: u64,
    bytes_per_pixel: u64,
    /// The decoder's own buffers besides the image.
    work: u64,
}

/// The resizer's buffers for the largest thumbnail, made from the decoded image: its first
/// pass keeps the image's longer side by twice the thumbnail's side (see [`square`]); that
/// intermediate square, the thumbnail, its RGB copy and the coefficient tables. The smaller
/// thumbnails are made from the largest.
fn thumbnail_cost(w: u32, h: u32, d: Decoded, cfg: &PhotoConfig) -> u64 {
    let side = u64::from(w.min(h).max(1));
    let out = u64::from(cfg.small.max(cfg.medium).max(cfg.large)).min(side);
    let long = u64::from(w.max(h));
    let bpp = d.bytes_per_pixel;
    long * 2 * out * bpp + 4 * out * out * bpp + out * out * (bpp + 3) * 2 + 64 * long + MIB
}

fn too_large(why: String) -> ScimError {
    ScimError::bad(
        "invalidValue",
        format!("the photo is too large to decode: {why}"),
    )
}

fn image_error(e: image::ImageError) -> ScimError {
    match e {
        image::ImageError::Limits(l) => too_large(l.to_string()),
        other => ScimError::bad(
            "invalidValue",
            format!("the photo cannot be decoded: {other}"),
        ),
    }
}

fn reader<'a>(
    bytes: &'a [u8],
    format: ImageFormat,
    cfg: &PhotoConfig,
) -> ImageReader<Cursor<&'a [u8]>> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(cfg.max_dimension);
    limits.max_image_height = Some(cfg.max_dimension);
    limits.max_alloc = Some(cfg.photo_limit());
    reader.limits(limits);
    reader
}

fn jpeg_options() -> zune_core::options::DecoderOptions {
    use zune_core::colorspace::ColorSpace;
    zune_core::options::DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::RGB)
}

fn jpeg_error(e: zune_jpeg::errors::DecodeErrors) -> ScimError {
    ScimError::bad("invalidValue", format!("the photo cannot be decoded: {e}"))
}

/// A JPEG's size from its headers, and what zune-jpeg allocates for it: the RGB output; a
/// progressive JPEG keeps every component's coefficients (two bytes a sample) until its last
/// scan, a sequential one an MCU row of them.
fn jpeg_headers(bytes: &[u8]) -> Result<(u32, u32, Decoded), ScimError> {
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        jpeg_options(),
    );
    decoder.decode_headers().map_err(jpeg_error)?;
    let info = decoder
        .info()
        .ok_or_else(|| ScimError::internal("JPEG information after its headers"))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    let components = u64::from(info.components.max(1));
    let padded_w = u64::from(w).div_ceil(16) * 16;
    let padded_h = u64::from(h).div_ceil(16) * 16;
    let work = if info.sof.is_progressive() {
        components * padded_w * padded_h * 2
    } else {
        components * padded_w * 32 * 2 * 2
    };
    Ok((
        w,
        h,
        Decoded {
            pixels: u64::from(w) * u64::from(h) * 3,
            bytes_per_pixel: 3,
            work,
        },
    ))
}

/// Decodes `original` (as [`inspect`] declared it; the caller holds room in the decode budget
/// for `declared.cost`) and makes its thumbnails: the photo to store, complete.
pub fn process(
    original: Vec<u8>,
    declared: &Declared,
    cfg: &PhotoConfig,
) -> Result<PhotoSet, ScimError> {
    let [small, medium, large] = thumbnails(&original, declared, cfg)?;
    Ok(PhotoSet {
        hash: blake3::hash(&original).to_hex().to_string(),
        content_type: mime(declared.format).to_string(),
        original,
        small,
        medium,
        large,
        thumbnail_type: THUMBNAIL_TYPE.to_string(),
    })
}

/// Decodes `bytes` completely (the caller holds room in the decode budget for
/// `declared.cost`) and makes the small, medium and large thumbnails from the decoded image.
pub fn thumbnails(
    bytes: &[u8],
    declared: &Declared,
    cfg: &PhotoConfig,
) -> Result<[Vec<u8>; 3], ScimError> {
    let img = decode(bytes, declared, cfg)?;
    make_thumbnails(&img, cfg)
}

fn decode(bytes: &[u8], declared: &Declared, cfg: &PhotoConfig) -> Result<DynamicImage, ScimError> {
    if declared.format == ImageFormat::Jpeg {
        return decode_jpeg(bytes, declared);
    }
    reader(bytes, declared.format, cfg)
        .decode()
        .map_err(image_error)
}

/// Decodes a JPEG strictly, as RGB: one cut or damaged anywhere (its scan data included) is
/// refused rather than shown with the missing part filled in.
fn decode_jpeg(bytes: &[u8], declared: &Declared) -> Result<DynamicImage, ScimError> {
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        jpeg_options(),
    );
    decoder.decode_headers().map_err(jpeg_error)?;
    let (w, h) = decoder
        .dimensions()
        .ok_or_else(|| ScimError::internal("JPEG dimensions after its headers"))?;
    // The same bytes as inspected: the same headers.
    if (w, h) != (declared.width as usize, declared.height as usize) {
        return Err(ScimError::internal("the JPEG's headers changed"));
    }
    let pixels = decoder.decode().map_err(jpeg_error)?;
    let img = image::RgbImage::from_raw(w as u32, h as u32, pixels).ok_or_else(|| {
        ScimError::bad(
            "invalidValue",
            "the photo cannot be decoded: its pixel data is short",
        )
    })?;
    Ok(DynamicImage::ImageRgb8(img))
}

/// The three thumbnails, largest first: the largest from the image (in its own pixel format,
/// so no full-size copy is made), each smaller one from the one before when that is at least
/// its size.
fn make_thumbnails(img: &DynamicImage, cfg: &PhotoConfig) -> Result<[Vec<u8>; 3], ScimError> {
    let sizes = [cfg.small, cfg.medium, cfg.large];
    let mut order = [0usize, 1, 2];
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let mut out: [Vec<u8>; 3] = Default::default();
    let mut resizer = Resizer::new();
    let mut made: Option<DynamicImage> = None;
    for i in order {
        let side = img.width().min(img.height()).max(1);
        let px = sizes[i].min(side).max(1);
        let source = match &made {
            Some(m) if m.width() >= px => m,
            _ => img,
        };
        let thumb = square(&mut resizer, source, px)?;
        out[i] = jpeg(&thumb)?;
        made = Some(thumb);
    }
    Ok(out)
}

/// `img`'s centre square scaled to `px` x `px`, as RGB. Lanczos3 takes a number of source
/// pixels per output pixel that grows with the ratio, so a photo many times the thumbnail's
/// size is first averaged down (a box filter, a handful of taps per pixel) to twice its size.
fn square(resizer: &mut Resizer, img: &DynamicImage, px: u32) -> Result<DynamicImage, ScimError> {
    let side = img.width().min(img.height()).max(1);
    let thumb = if side / px >= 4 {
        let mid = centre(resizer, img, 2 * px, fast_image_resize::FilterType::Box)?;
        centre(resizer, &mid, px, fast_image_resize::FilterType::Lanczos3)?
    } else {
        centre(resizer, img, px, fast_image_resize::FilterType::Lanczos3)?
    };
    Ok(match thumb {
        DynamicImage::ImageRgb8(_) => thumb,
        other => DynamicImage::ImageRgb8(other.to_rgb8()),
    })
}

/// `img`'s centre square scaled to `px` x `px`, in `img`'s own pixel format.
fn centre(
    resizer: &mut Resizer,
    img: &DynamicImage,
    px: u32,
    filter: fast_image_resize::FilterType,
) -> Result<DynamicImage, ScimError> {
    let (w, h) = (img.width(), img.height());
    let side = w.min(h).max(1);
    let left = f64::from((w - side.min(w)) / 2);
    let top = f64::from((h - side.min(h)) / 2);
    let mut dst = DynamicImage::new(px, px, img.color());
    // Alpha is dropped from the thumbnail, so the colours are scaled as they are; premultiplying
    // them would copy the whole image first.
    let opts = ResizeOptions::new()
        .resize_alg(ResizeAlg::Convolution(filter))
        .use_alpha(false)
        .crop(left, top, f64::from(side), f64::from(side));
    resizer
        .resize(img, &mut dst, &opts)
        .map_err(ScimError::internal)?;
    Ok(dst)
}

fn jpeg(img: &DynamicImage) -> Result<Vec<u8>, ScimError> {
    let mut bytes = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 85)
        .encode_image(img)
        .map_err(ScimError::internal)?;
    Ok(bytes)
}

/// The server-wide budget for decoding memory: a semaphore whose permits are KiB. A decode
/// holds room for its declared cost from before it starts until its buffers are freed.
pub struct DecodeBudget {
    permits: Arc<Semaphore>,
    kib: u32,
    wait: Duration,
}

/// Room in the [`DecodeBudget`], given back when dropped.
pub struct DecodePermit {
    _permit: OwnedSemaphorePermit,
}

impl DecodeBudget {
    pub fn new(cfg: &PhotoConfig) -> DecodeBudget {
        let kib = u32::try_from(cfg.decode_budget / 1024)
            .unwrap_or(u32::MAX)
            .max(1);
        DecodeBudget {
            permits: Arc::new(Semaphore::new(kib as usize)),
            kib,
            wait: Duration::from_secs(cfg.decode_wait_secs),
        }
    }

    /// Waits for room for `cost` bytes, up to the configured wait; past it, 503 with
    /// `Retry-After`. The requests waiting are served in their order.
    pub async fn acquire(&self, cost: u64) -> Result<DecodePermit, ScimError> {
        let kib = u32::try_from(cost.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.kib);
        match tokio::time::timeout(self.wait, self.permits.clone().acquire_many_owned(kib)).await {
            Ok(Ok(permit)) => Ok(DecodePermit { _permit: permit }),
            Ok(Err(closed)) => Err(ScimError::internal(closed)),
            Err(_) => {
                let retry = self.wait.as_secs().max(1);
                Err(ScimError::busy(
                    format!(
                        "the service is decoding other photos with all the memory it may use for \
                         that (photos.decode_budget, {} MiB); try again in {retry} s",
                        u64::from(self.kib) / 1024
                    ),
                    retry,
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(img: DynamicImage) -> Vec<u8> {
        let mut out = Vec::new();
        img.write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    /// A valid PNG whose header declares `w`x`h` RGBA (its pixel data is short).
    fn declaring(w: u32, h: u32) -> Vec<u8> {
        let mut p = png(DynamicImage::ImageRgba8(image::RgbaImage::new(1, 1)));
        p[16..20].copy_from_slice(&w.to_be_bytes());
        p[20..24].copy_from_slice(&h.to_be_bytes());
        let crc = crc32(&p[12..29]);
        p[29..33].copy_from_slice(&crc.to_be_bytes());
        p
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
            }
        }
        !c
    }

    #[test]
    fn a_declared_size_above_the_budget_is_refused_before_decoding() {
        let cfg = PhotoConfig::default();
        // 10000x10000 RGBA: 400 MB decoded, more than the default 256 MiB budget.
        let e = inspect(&declaring(10_000, 10_000), &cfg).unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some("invalidValue")));
        assert!(e.detail.contains("too large"), "{}", e.detail);
        assert!(e.detail.contains("photos.decode_budget"), "{}", e.detail);
        // Past max_dimension, whatever the budget.
        let e = inspect(&declaring(10_001, 10), &cfg).unwrap_err();
        assert!(e.detail.contains("photos.max_dimension"), "{}", e.detail);
        // A smaller per-photo limit is named as such.
        let cfg = PhotoConfig {
            max_alloc: Some(64 * MIB),
            ..PhotoConfig::default()
        };
        let e = inspect(&declaring(5_000, 5_000), &cfg).unwrap_err();
        assert!(e.detail.contains("photos.max_alloc"), "{}", e.detail);
        // 5000x5000 RGBA (100 MB) fits the default budget; its cost counts the pixels.
        let d = inspect(&declaring(5_000, 5_000), &PhotoConfig::default()).unwrap();
        assert_eq!((d.width, d.height), (5_000, 5_000));
        assert!(d.cost >= 100_000_000 && d.cost < 120_000_000, "{}", d.cost);
    }

    #[test]
    fn a_sequential_jpeg_costs_its_rgb_pixels_and_an_mcu_row_of_coefficients() {
        let img = image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut baseline = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut baseline, 90)
            .encode_image(&img)
            .unwrap();
        let d = inspect(&baseline, &PhotoConfig::default()).unwrap();
        assert_eq!(d.format, ImageFormat::Jpeg);
        assert!(d.cost >= 640 * 480 * 3, "{}", d.cost);
        let (_, _, seq) = jpeg_headers(&baseline).unwrap();
        assert!(seq.work < 640 * 480, "{seq:?}");
    }

    #[test]
    fn thumbnails_are_made_at_upload_square_and_never_upscaled() {
        let cfg = PhotoConfig::default();
        for img in [
            DynamicImage::ImageRgb8(image::RgbImage::from_fn(400, 200, |x, y| {
                image::Rgb([x as u8, y as u8, 90])
            })),
            DynamicImage::ImageRgba8(image::RgbaImage::from_fn(60, 90, |x, y| {
                image::Rgba([x as u8, y as u8, 90, (x + y) as u8])
            })),
            DynamicImage::ImageLuma16(image::ImageBuffer::from_fn(500, 350, |x, _| {
                image::Luma([(x * 100) as u16])
            })),
        ] {
            let (w, h) = (img.width(), img.height());
            let bytes = png(img);
            let declared = inspect(&bytes, &cfg).unwrap();
            let set = process(bytes.clone(), &declared, &cfg).unwrap();
            assert_eq!(set.original, bytes);
            assert_eq!(set.content_type, "image/png");
            let side = w.min(h);
            for (thumb, px) in [(&set.small, 48), (&set.medium, 72), (&set.large, 300)] {
                let t = image::load_from_memory_with_format(thumb, ImageFormat::Jpeg).unwrap();
                assert_eq!((t.width(), t.height()), (px.min(side), px.min(side)));
            }
        }
    }

    #[test]
    fn the_thumbnails_keep_the_picture() {
        // Left half red, right half blue: the thumbnails are of the centre square, so both.
        let img = image::RgbImage::from_fn(600, 300, |x, _| {
            if x < 300 {
                image::Rgb([250, 0, 0])
            } else {
                image::Rgb([0, 0, 250])
            }
        });
        let bytes = png(DynamicImage::ImageRgb8(img));
        let cfg = PhotoConfig::default();
        let d = inspect(&bytes, &cfg).unwrap();
        let [small, _, large] = thumbnails(&bytes, &d, &cfg).unwrap();
        for (t, px) in [(small, 48u32), (large, 300)] {
            let t = image::load_from_memory(&t).unwrap().to_rgb8();
            let left = t.get_pixel(2, px / 2);
            let right = t.get_pixel(px - 3, px / 2);
            assert!(left[0] > 200 && left[2] < 50, "{left:?}");
            assert!(right[2] > 200 && right[0] < 50, "{right:?}");
        }
    }

    #[tokio::test]
    async fn the_budget_makes_decodes_wait_then_answers_503_with_retry_after() {
        let cfg = PhotoConfig {
            decode_budget: 10 * MIB,
            decode_wait_secs: 0,
            ..PhotoConfig::default()
        };
        let budget = DecodeBudget::new(&cfg);
        let first = budget.acquire(6 * MIB).await.unwrap();
        let e = budget.acquire(6 * MIB).await.err().unwrap();
        assert_eq!(e.status, 503);
        assert_eq!(e.retry_after, Some(1));
        assert!(e.detail.contains("photos.decode_budget"), "{}", e.detail);
        // What fits beside it is taken at once.
        let second = budget.acquire(4 * MIB).await.unwrap();
        drop(first);
        let third = budget.acquire(6 * MIB).await.unwrap();
        drop((second, third));
        // A decode waiting gets its room when the one before gives it back.
        let cfg = PhotoConfig {
            decode_budget: 10 * MIB,
            decode_wait_secs: 30,
            ..PhotoConfig::default()
        };
        let budget = Arc::new(DecodeBudget::new(&cfg));
        let held = budget.acquire(8 * MIB).await.unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.acquire(8 * MIB).await.map(|_| ()) })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        drop(held);
        waiting.await.unwrap().unwrap();
    }

    #[test]
    fn settings_that_cannot_work_are_named() {
        let ok = PhotoConfig::default();
        assert_eq!(ok.check(60), Ok(()));
        let e = PhotoConfig {
            decode_wait_secs: 60,
            ..ok.clone()
        }
        .check(60)
        .unwrap_err();
        assert!(e.contains("photos.decode_wait_secs"), "{e}");
        let e = PhotoConfig {
            decode_budget: 1000,
            ..ok.clone()
        }
        .check(60)
        .unwrap_err();
        assert!(e.contains("photos.decode_budget"), "{e}");
        assert_eq!(
            PhotoConfig {
                max_alloc: Some(512 * MIB),
                ..ok
            }
            .photo_limit(),
            256 * MIB
        );
    }
}
