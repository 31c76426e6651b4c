//! Images from `image_url` parts, safely: `data:` URLs always; `file://` only under
//! `--allowed-local-media-path` (both paths canonicalised, so `..` and symlinks cannot leave it);
//! `http(s)://` refused (the server never fetches). Limits: encoded bytes, then the width and height
//! read from the image's header before any pixel is decoded (a decompression bomb — a small file
//! declaring 30 000 × 30 000 pixels — is refused there), then the decoder's own allocation limit.
use std::io::Cursor;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use image::{DynamicImage, ImageReader};

use crate::error::ApiError;

/// Image limits and where local files may come from.
#[derive(Debug, Clone)]
pub struct MediaPolicy {
    /// Encoded image bytes (after base64 decoding), at most.
    pub max_image_bytes: usize,
    /// Width × height, at most (checked from the header, before decoding).
    pub max_pixels: u64,
    /// Width or height, at most.
    pub max_side: u32,
    /// Canonical directory `file://` URLs may point into; `None` refuses them.
    pub allowed_local_dir: Option<PathBuf>,
}

impl Default for MediaPolicy {
    fn default() -> Self {
        Self { max_image_bytes: 20 << 20, max_pixels: 8192 * 8192, max_side: 16384, allowed_local_dir: None }
    }
}

/// Decodes the image an `image_url.url` names. `param` names the field for errors.
///
/// Errors (all 400 unless stated): `remote_url_not_supported` for http(s); `file_url_not_allowed`
/// (no --allowed-local-media-path, or a path outside it, or missing); `invalid_image_url` for other
/// schemes or a malformed `data:` URL; `image_too_large` (413) over the byte limit;
/// `image_dimensions_too_large` over the pixel or side limit; `invalid_image` for bytes that are not
/// a PNG, JPEG, WebP, BMP or GIF or fail to decode.
pub fn load_image(url: &str, policy: &MediaPolicy, param: &str) -> Result<DynamicImage, ApiError> {
    let bytes = fetch_bytes(url, policy, param)?;
    decode_checked(&bytes, policy, param)
}

fn scheme(url: &str) -> String {
    url.split_once(':').map(|(s, _)| s.trim().to_ascii_lowercase()).unwrap_or_default()
}

fn fetch_bytes(url: &str, policy: &MediaPolicy, param: &str) -> Result<Vec<u8>, ApiError> {
    match scheme(url).as_str() {
        "data" => data_url_bytes(url, policy, param),
        "file" => local_file_bytes(url, policy, param),
        "http" | "https" => Err(ApiError::invalid_param(
            "remote_url_not_supported",
            param,
            "this server does not fetch remote images; send the image inline as a data: URL \
             (data:image/png;base64,...)",
        )),
        "" => Err(ApiError::invalid_param(
            "invalid_image_url",
            param,
            "the image URL has no scheme; send a data: URL (data:image/png;base64,...)",
        )),
        other => Err(ApiError::invalid_param(
            "invalid_image_url",
            param,
            format!("unsupported image URL scheme `{other}`; send a data: URL (data:image/png;base64,...)"),
        )),
    }
}

/// `data:[<media type>][;base64],<data>` (RFC 2397); only base64 payloads carry images.
fn data_url_bytes(url: &str, policy: &MediaPolicy, param: &str) -> Result<Vec<u8>, ApiError> {
    let rest = &url[url.find(':').map_or(0, |i| i + 1)..];
    let Some((meta, payload)) = rest.split_once(',') else {
        return Err(ApiError::invalid_param("invalid_image_url", param, "malformed data: URL (no `,`)"));
    };
    if !meta.split(';').any(|p| p.trim().eq_ignore_ascii_case("base64")) {
        return Err(ApiError::invalid_param(
            "invalid_image_url",
            param,
            "the data: URL is not base64-encoded (expected data:image/...;base64,...)",
        ));
    }
    // Whitespace is tolerated inside base64 payloads (line-wrapped encoders).
    let payload: String = payload.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    // Refuse before decoding: 4 characters carry 3 bytes.
    let decoded_len = payload.len() / 4 * 3;
    if decoded_len > policy.max_image_bytes + 3 {
        return Err(too_many_bytes(decoded_len, policy, param));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(payload.as_bytes())
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(payload.as_bytes()))
        .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(payload.as_bytes()))
        .map_err(|e| {
            ApiError::invalid_param("invalid_image", param, format!("the data: URL is not valid base64: {e}"))
        })?;
    if bytes.len() > policy.max_image_bytes {
        return Err(too_many_bytes(bytes.len(), policy, param));
    }
    Ok(bytes)
}

fn too_many_bytes(len: usize, policy: &MediaPolicy, param: &str) -> ApiError {
    ApiError::too_large(
        "image_too_large",
        format!("the image is {len} bytes; the server accepts at most {} (--max-image-bytes)", policy.max_image_bytes),
    )
    .with_param(param)
}

/// `file:///abs/path` (or `file://localhost/abs/path`), canonicalised and required to lie under the
/// allowed directory.
fn local_file_bytes(url: &str, policy: &MediaPolicy, param: &str) -> Result<Vec<u8>, ApiError> {
    let not_allowed = |msg: String| ApiError::invalid_param("file_url_not_allowed", param, msg);
    let Some(dir) = &policy.allowed_local_dir else {
        return Err(not_allowed(
            "file:// image URLs are disabled; start the server with --allowed-local-media-path DIR, or send a data: URL"
                .into(),
        ));
    };
    let rest = &url[url.find(':').map_or(0, |i| i + 1)..];
    let path = rest
        .strip_prefix("//localhost/")
        .map(|p| format!("/{p}"))
        .or_else(|| rest.strip_prefix("//").map(str::to_string))
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| not_allowed("a file:// URL must be absolute: file:///path/to/image.png".into()))?;
    let path =
        percent_decode(&path).ok_or_else(|| not_allowed("malformed percent-encoding in the file:// URL".into()))?;
    // Canonicalise (resolves `..` and symlinks), then require the allowed directory as a prefix.
    let canonical = Path::new(&path)
        .canonicalize()
        .map_err(|_| not_allowed("the file:// URL names no readable file under the allowed media directory".into()))?;
    if !canonical.starts_with(dir) {
        return Err(not_allowed("the file:// URL points outside the allowed media directory".into()));
    }
    let meta = std::fs::metadata(&canonical)
        .map_err(|_| not_allowed("the file:// URL names no readable file under the allowed media directory".into()))?;
    if !meta.is_file() {
        return Err(not_allowed("the file:// URL does not name a regular file".into()));
    }
    if meta.len() > policy.max_image_bytes as u64 {
        return Err(too_many_bytes(meta.len() as usize, policy, param));
    }
    std::fs::read(&canonical).map_err(|_| not_allowed("the file could not be read".into()))
}

/// `%XX` decoding of a URL path; `None` for a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Reads the header's dimensions, checks them, then decodes with the decoder's limits set too.
pub fn decode_checked(bytes: &[u8], policy: &MediaPolicy, param: &str) -> Result<DynamicImage, ApiError> {
    let not_image = |detail: String| {
        ApiError::invalid_param(
            "invalid_image",
            param,
            format!("the image could not be decoded ({detail}); send a PNG, JPEG, WebP, BMP or GIF"),
        )
    };
    let reader = || ImageReader::new(Cursor::new(bytes)).with_guessed_format();
    let r = reader().map_err(|e| not_image(e.to_string()))?;
    if r.format().is_none() {
        return Err(not_image("unrecognised format".into()));
    }
    let (w, h) = r.into_dimensions().map_err(|e| not_image(e.to_string()))?;
    if w == 0 || h == 0 {
        return Err(not_image(format!("the image is {w}×{h}")));
    }
    if w > policy.max_side || h > policy.max_side || u64::from(w) * u64::from(h) > policy.max_pixels {
        return Err(ApiError::invalid_param(
            "image_dimensions_too_large",
            param,
            format!(
                "the image declares {w}×{h} pixels; the server decodes at most {} pixels and {} per side",
                policy.max_pixels, policy.max_side
            ),
        ));
    }
    let mut r = reader().map_err(|e| not_image(e.to_string()))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(policy.max_side);
    limits.max_image_height = Some(policy.max_side);
    // RGBA16 is the widest decoded layout of the formats enabled: 8 bytes per pixel, plus slack.
    limits.max_alloc = Some(policy.max_pixels.saturating_mul(8).saturating_add(1 << 20));
    r.limits(limits);
    r.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => ApiError::invalid_param(
            "image_dimensions_too_large",
            param,
            format!("the image exceeds the server's decoding limits: {l}"),
        ),
        e => not_image(e.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b/c.png").as_deref(), Some("/a b/c.png"));
        assert_eq!(percent_decode("/a%2"), None);
        assert_eq!(percent_decode("/a%zz"), None);
    }

    #[test]
    fn schemes_are_case_insensitive() {
        let p = MediaPolicy::default();
        assert_eq!(load_image("HTTPS://example.invalid/x.png", &p, "u").unwrap_err().code, "remote_url_not_supported");
        assert_eq!(load_image("ftp://x", &p, "u").unwrap_err().code, "invalid_image_url");
        assert_eq!(load_image("no scheme", &p, "u").unwrap_err().code, "invalid_image_url");
        assert_eq!(load_image("data:image/png,abc", &p, "u").unwrap_err().code, "invalid_image_url");
    }
}
