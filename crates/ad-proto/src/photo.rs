//! Fitting a photo into a directory attribute with a size limit (AD's `thumbnailPhoto`,
//! `rangeUpper` 102,400 bytes): a photo already small enough is sent as it is; a larger one is
//! decoded under limits (a decompression bomb is refused), scaled down (never up) and
//! re-encoded as JPEG until it fits.

use fast_image_resize::images::Image;
use fast_image_resize::{PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageReader, Limits};
use std::borrow::Cow;
use std::io::Cursor;

/// The largest image side decoded (bigger is refused as a likely bomb).
const MAX_SIDE: u32 = 12_000;

/// `bytes` fitted under `max_bytes`, or why it cannot be.
pub fn fit(bytes: &[u8], max_bytes: usize) -> Result<Cow<'_, [u8]>, String> {
    if bytes.len() <= max_bytes {
        return Ok(Cow::Borrowed(bytes));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("the photo cannot be read: {e}"))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| format!("the photo cannot be decoded: {e}"))?;
    let img = DynamicImage::ImageRgb8(img.to_rgb8());
    let (w, h) = (img.width(), img.height());
    // Start at the largest side that keeps the shape and is not bigger than the source, then
    // shrink and lower the quality until it fits.
    let mut side = w.max(h).min(1024);
    loop {
        let scale = f64::from(side) / f64::from(w.max(h));
        let (nw, nh) = (
            ((f64::from(w) * scale).round() as u32).clamp(1, w),
            ((f64::from(h) * scale).round() as u32).clamp(1, h),
        );
        let resized = resize(&img, nw, nh)?;
        for quality in [85u8, 75, 60] {
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
                .encode_image(&resized)
                .map_err(|e| format!("the photo cannot be encoded: {e}"))?;
            if out.len() <= max_bytes {
                return Ok(Cow::Owned(out));
            }
        }
        if side <= 16 {
            return Err(format!(
                "the photo does not fit in {max_bytes} bytes even at 16 pixels"
            ));
        }
        side = side * 3 / 4;
    }
}

fn resize(img: &DynamicImage, w: u32, h: u32) -> Result<image::RgbImage, String> {
    if (w, h) == (img.width(), img.height()) {
        return Ok(img.to_rgb8());
    }
    let mut dst = Image::new(w, h, PixelType::U8x3);
    Resizer::new()
        .resize(
            img,
            &mut dst,
            &ResizeOptions::new().resize_alg(ResizeAlg::Convolution(
                fast_image_resize::FilterType::Lanczos3,
            )),
        )
        .map_err(|e| format!("the photo cannot be resized: {e}"))?;
    image::RgbImage::from_raw(w, h, dst.into_vec()).ok_or_else(|| "resize buffer".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy_jpeg(side: u32) -> Vec<u8> {
        let mut x: u32 = 12345;
        let img = image::RgbImage::from_fn(side, side, |_, _| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            image::Rgb([(x >> 16) as u8, (x >> 8) as u8, x as u8])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 95)
            .encode_image(&img)
            .unwrap();
        out
    }

    #[test]
    fn a_small_photo_is_sent_as_it_is() {
        let b = noisy_jpeg(32);
        assert!(matches!(fit(&b, 100 * 1024).unwrap(), Cow::Borrowed(_)));
    }

    #[test]
    fn a_large_photo_is_fitted_under_the_limit_without_upscaling() {
        let b = noisy_jpeg(800);
        assert!(b.len() > 400_000, "{}", b.len());
        let out = fit(&b, 100 * 1024).unwrap();
        assert!(out.len() <= 100 * 1024, "{}", out.len());
        let img = image::load_from_memory(&out).unwrap();
        assert!(img.width() <= 800 && img.width() == img.height());
    }

    #[test]
    fn bytes_that_are_not_an_image_are_an_error() {
        assert!(fit(&vec![7u8; 200_000], 1000).is_err());
    }
}
