//! OP_COMPRESSED compressors: noop (id 0), snappy (1), zlib (2) and zstd (3).
//!
//! Both directions append to a caller-owned buffer. Decompression is told the exact size to
//! expect (OP_COMPRESSED's `uncompressedSize`, which the caller has already checked against the
//! maximum message size) and never produces or allocates more than that, so a decompression bomb
//! fails with [`WireError::DecompressedSizeMismatch`] instead of exhausting memory.

use std::fmt;
use std::io::{Cursor, Write};

use crate::options::Compressor;

use super::WireError;

/// The noop compressor id (message carried uncompressed).
pub const NOOP_ID: u8 = 0;
/// The snappy compressor id.
pub const SNAPPY_ID: u8 = 1;
/// The zlib compressor id.
pub const ZLIB_ID: u8 = 2;
/// The zstd compressor id.
pub const ZSTD_ID: u8 = 3;

/// The handshake name of a compressor id, if known.
pub fn name_of(id: u8) -> Option<&'static str> {
    match id {
        NOOP_ID => Some("noop"),
        SNAPPY_ID => Some("snappy"),
        ZLIB_ID => Some("zlib"),
        ZSTD_ID => Some("zstd"),
        _ => None,
    }
}

/// Compresses `input` with `compressor` and appends the result to `out`.
///
/// Snappy uses the raw (unframed) format, as MongoDB does; zlib uses `level` (`None` or -1 for
/// zlib's default, else 0-9); zstd uses its default level.
pub fn compress(compressor: &Compressor, input: &[u8], out: &mut Vec<u8>) -> Result<(), WireError> {
    match compressor {
        Compressor::Snappy => {
            let bound = snap::raw::max_compress_len(input.len());
            if bound == 0 && !input.is_empty() {
                return Err(WireError::Compression(
                    "input too large for snappy".to_string(),
                ));
            }
            let start = out.len();
            out.resize(start + bound, 0);
            let result = snap::raw::Encoder::new().compress(input, &mut out[start..]);
            match result {
                Ok(n) => {
                    out.truncate(start + n);
                    Ok(())
                }
                Err(e) => {
                    out.truncate(start);
                    Err(WireError::Compression(format!("snappy: {e}")))
                }
            }
        }
        Compressor::Zlib { level } => {
            let level = match level {
                None | Some(-1) => flate2::Compression::default(),
                Some(l @ 0..=9) => flate2::Compression::new(*l as u32),
                Some(l) => {
                    return Err(WireError::Compression(format!(
                        "invalid zlib compression level {l} (must be -1 to 9)"
                    )))
                }
            };
            let start = out.len();
            let mut encoder = flate2::write::ZlibEncoder::new(&mut *out, level);
            let result = encoder
                .write_all(input)
                .and_then(|()| encoder.finish().map(|_| ()));
            result.map_err(|e| {
                out.truncate(start);
                WireError::Compression(format!("zlib: {e}"))
            })
        }
        Compressor::Zstd => {
            let start = out.len();
            out.reserve(zstd::zstd_safe::compress_bound(input.len()));
            let result =
                zstd::bulk::Compressor::new(zstd::DEFAULT_COMPRESSION_LEVEL).and_then(|mut c| {
                    let mut cursor = Cursor::new(&mut *out);
                    cursor.set_position(start as u64);
                    c.compress_to_buffer(input, &mut cursor)
                });
            result.map(|_| ()).map_err(|e| {
                out.truncate(start);
                WireError::Compression(format!("zstd: {e}"))
            })
        }
    }
}

/// Decompresses `input`, compressed by the compressor with id `compressor_id`, appending exactly
/// `expected_len` bytes to `out`.
///
/// Errors: [`WireError::UnknownCompressor`] for an unknown id,
/// [`WireError::DecompressedSizeMismatch`] when the data decompresses to another size, and
/// [`WireError::Compression`] when it is corrupt. On error `out` is left as it was. At most
/// `expected_len` bytes (plus one, to detect excess) are ever produced; callers bound
/// `expected_len` by the maximum message size.
///
/// Creates a fresh zstd context each call; use a [`Decompressor`] to reuse one.
pub fn decompress(
    compressor_id: u8,
    input: &[u8],
    expected_len: usize,
    out: &mut Vec<u8>,
) -> Result<(), WireError> {
    Decompressor::new().decompress(compressor_id, input, expected_len, out)
}

/// Reusable decompression state: keeps the zstd context between messages so that decoding a
/// stream of compressed replies does not allocate one per message.
#[derive(Default)]
pub struct Decompressor {
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

impl fmt::Debug for Decompressor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decompressor")
            .field("zstd_context", &self.zstd.is_some())
            .finish()
    }
}

impl Decompressor {
    /// A decompressor with no context allocated yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Like the free function [`decompress`], reusing this decompressor's state.
    pub fn decompress(
        &mut self,
        compressor_id: u8,
        input: &[u8],
        expected_len: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        let start = out.len();
        let result = self.decompress_inner(compressor_id, input, expected_len, out, start);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn decompress_inner(
        &mut self,
        compressor_id: u8,
        input: &[u8],
        expected: usize,
        out: &mut Vec<u8>,
        start: usize,
    ) -> Result<(), WireError> {
        let mismatch = |actual: usize| WireError::DecompressedSizeMismatch { expected, actual };
        match compressor_id {
            NOOP_ID => {
                if input.len() != expected {
                    return Err(mismatch(input.len()));
                }
                out.extend_from_slice(input);
                Ok(())
            }
            SNAPPY_ID => {
                // The stream's elements are walked first (no output): only a stream that
                // produces exactly `expected` bytes gets a buffer, so a few bytes claiming
                // megabytes cost nothing.
                let produced = snappy_output_len(input)?;
                if produced != expected {
                    return Err(mismatch(produced));
                }
                out.resize(start + expected, 0);
                let n = snap::raw::Decoder::new()
                    .decompress(input, &mut out[start..])
                    .map_err(|e| WireError::Compression(format!("snappy: {e}")))?;
                if n != expected {
                    return Err(mismatch(n));
                }
                Ok(())
            }
            ZLIB_ID => {
                // Inflated into the buffer's spare capacity, grown with the output (never ahead
                // of it, never zero-filled), and stopped once past `expected`.
                let limit = expected.saturating_add(1);
                let mut inflate = flate2::Decompress::new(true);
                loop {
                    let produced = out.len() - start;
                    if produced >= limit {
                        break;
                    }
                    if out.len() == out.capacity() {
                        let step = produced.max(input.len()).max(4096);
                        out.reserve_exact(step.min(limit - produced));
                    }
                    let consumed = usize::try_from(inflate.total_in()).unwrap_or(usize::MAX);
                    let rest = input.get(consumed..).unwrap_or_default();
                    let before = (consumed, out.len());
                    let status = inflate
                        .decompress_vec(rest, out, flate2::FlushDecompress::None)
                        .map_err(|e| WireError::Compression(format!("zlib: {e}")))?;
                    let progressed =
                        inflate.total_in() as usize != before.0 || out.len() != before.1;
                    if status == flate2::Status::StreamEnd || !progressed {
                        break;
                    }
                }
                let n = out.len() - start;
                if n != expected {
                    return Err(mismatch(n));
                }
                Ok(())
            }
            ZSTD_ID => {
                // A zstd block of 4 bytes (an RLE block) produces at most 128 KiB, so a frame
                // cannot produce more than 32 Ki times its size: a larger claim is refused
                // before any buffer is allocated for it.
                if expected > input.len().saturating_mul(ZSTD_MAX_RATIO) {
                    return Err(WireError::Compression(format!(
                        "zstd: {} compressed bytes cannot hold the {expected} announced",
                        input.len()
                    )));
                }
                if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(input) {
                    if size != expected as u64 {
                        return Err(mismatch(usize::try_from(size).unwrap_or(usize::MAX)));
                    }
                }
                let ctx = match &mut self.zstd {
                    Some(ctx) => ctx,
                    slot => slot.insert(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| WireError::Compression(format!("zstd: {e}")))?,
                    ),
                };
                out.reserve_exact(expected);
                let mut cursor = Cursor::new(&mut *out);
                cursor.set_position(start as u64);
                let n = ctx
                    .decompress_to_buffer(input, &mut cursor)
                    .map_err(|e| WireError::Compression(format!("zstd: {e}")))?;
                if n != expected {
                    return Err(mismatch(n));
                }
                Ok(())
            }
            other => Err(WireError::UnknownCompressor(other)),
        }
    }
}

/// The most a zstd frame can expand: a 4-byte RLE block (3-byte header, 1 byte) gives at most
/// a 128 KiB block.
const ZSTD_MAX_RATIO: usize = 128 * 1024 / 4;

/// The number of bytes the raw snappy stream `input` produces, found by walking its elements
/// without producing them; an error for a truncated element, a copy that reaches before the
/// start, or a stream that produces more than its header announces (the walk stops there, so it
/// costs at most one pass over `input`).
fn snappy_output_len(input: &[u8]) -> Result<usize, WireError> {
    let corrupt = |what: &str| WireError::Compression(format!("snappy: {what}"));
    let announced = snap::raw::decompress_len(input)
        .map_err(|e| WireError::Compression(format!("snappy: {e}")))?;
    // The header is a varint of at most 5 bytes, each with the high bit set but the last.
    let header = input
        .iter()
        .position(|b| b & 0x80 == 0)
        .ok_or_else(|| corrupt("truncated header"))?
        + 1;
    let byte = |i: usize| input.get(i).copied().map(usize::from);
    let mut i = header;
    let mut produced: usize = 0;
    while let Some(tag) = byte(i) {
        let (len, offset) = match tag & 3 {
            0 => {
                let code = tag >> 2;
                let (len, extra) = if code < 60 {
                    (code + 1, 0)
                } else {
                    let extra = code - 59;
                    let mut v = 0usize;
                    for k in 0..extra {
                        v |=
                            byte(i + 1 + k).ok_or_else(|| corrupt("truncated literal"))? << (8 * k);
                    }
                    (
                        v.checked_add(1)
                            .ok_or_else(|| corrupt("literal too long"))?,
                        extra,
                    )
                };
                i = (i + 1 + extra)
                    .checked_add(len)
                    .filter(|&end| end <= input.len())
                    .ok_or_else(|| corrupt("truncated literal"))?;
                (len, None)
            }
            1 => {
                let low = byte(i + 1).ok_or_else(|| corrupt("truncated copy"))?;
                i += 2;
                (4 + ((tag >> 2) & 7), Some(((tag >> 5) << 8) | low))
            }
            2 => {
                let (a, b) = (byte(i + 1), byte(i + 2));
                let offset = a.zip(b).ok_or_else(|| corrupt("truncated copy"))?;
                i += 3;
                (1 + (tag >> 2), Some(offset.0 | (offset.1 << 8)))
            }
            _ => {
                let mut offset = 0usize;
                for k in 0..4 {
                    offset |= byte(i + 1 + k).ok_or_else(|| corrupt("truncated copy"))? << (8 * k);
                }
                i += 5;
                (1 + (tag >> 2), Some(offset))
            }
        };
        if let Some(offset) = offset {
            if offset == 0 || offset > produced {
                return Err(corrupt("a copy reaches before the start"));
            }
        }
        produced = produced.saturating_add(len);
        if produced > announced {
            return Err(WireError::DecompressedSizeMismatch {
                expected: announced,
                actual: produced,
            });
        }
    }
    if produced != announced {
        return Err(WireError::DecompressedSizeMismatch {
            expected: announced,
            actual: produced,
        });
    }
    Ok(produced)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Vec<Compressor> {
        vec![
            Compressor::Snappy,
            Compressor::Zlib { level: None },
            Compressor::Zlib { level: Some(-1) },
            Compressor::Zlib { level: Some(0) },
            Compressor::Zlib { level: Some(9) },
            Compressor::Zstd,
        ]
    }

    fn sample() -> Vec<u8> {
        (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    #[test]
    fn round_trip_every_compressor_appending() {
        let input = sample();
        for c in all() {
            let mut compressed = b"prefix".to_vec();
            compress(&c, &input, &mut compressed).unwrap();
            assert_eq!(&compressed[..6], b"prefix", "{c:?}");
            let mut out = b"xy".to_vec();
            decompress(c.id(), &compressed[6..], input.len(), &mut out).unwrap();
            assert_eq!(&out[..2], b"xy");
            assert_eq!(&out[2..], &input[..], "{c:?}");
        }
    }

    #[test]
    fn round_trip_empty_input() {
        for c in all() {
            let mut compressed = Vec::new();
            compress(&c, &[], &mut compressed).unwrap();
            let mut out = Vec::new();
            decompress(c.id(), &compressed, 0, &mut out).unwrap();
            assert!(out.is_empty(), "{c:?}");
        }
    }

    #[test]
    fn noop_round_trip_and_mismatch() {
        let mut out = Vec::new();
        decompress(NOOP_ID, b"abc", 3, &mut out).unwrap();
        assert_eq!(out, b"abc");
        let err = decompress(NOOP_ID, b"abc", 4, &mut out).unwrap_err();
        assert_eq!(
            err,
            WireError::DecompressedSizeMismatch {
                expected: 4,
                actual: 3
            }
        );
        assert_eq!(out, b"abc", "failed decompression leaves out untouched");
    }

    #[test]
    fn size_mismatch_is_detected_for_every_compressor() {
        let input = sample();
        for c in all() {
            let mut compressed = Vec::new();
            compress(&c, &input, &mut compressed).unwrap();
            for expected in [input.len() - 1, input.len() + 1, 0] {
                let mut out = Vec::new();
                let err = decompress(c.id(), &compressed, expected, &mut out).unwrap_err();
                assert!(
                    matches!(
                        err,
                        WireError::DecompressedSizeMismatch { expected: e, .. } if e == expected
                    ) || matches!(err, WireError::Compression(_)),
                    "{c:?} expected {expected}: {err:?}"
                );
                assert!(out.is_empty());
            }
        }
    }

    #[test]
    fn bomb_never_produces_more_than_announced() {
        // 4 MiB of zeros compresses to a few KiB; announce 100 bytes.
        let big = vec![0u8; 4 << 20];
        for c in all() {
            let mut compressed = Vec::new();
            compress(&c, &big, &mut compressed).unwrap();
            let mut out = Vec::new();
            let err = decompress(c.id(), &compressed, 100, &mut out).unwrap_err();
            assert!(
                matches!(
                    err,
                    WireError::DecompressedSizeMismatch { expected: 100, .. }
                        | WireError::Compression(_)
                ),
                "{c:?}: {err:?}"
            );
            assert!(
                out.capacity() < 1 << 20,
                "{c:?} allocated {}",
                out.capacity()
            );
        }
    }

    /// Frames of a few bytes that announce far more than they hold: refused before any buffer
    /// of the announced size is allocated, let alone zero-filled (a 10-byte snappy payload
    /// claiming 40 MB used to cost 40 MB; one claiming 2 GiB, 2 GiB and two seconds).
    #[test]
    fn small_frames_claiming_large_sizes_allocate_nothing_of_that_size() {
        let claims = [40_000_000usize, (1 << 31) - 17];
        for claim in claims {
            // snappy: the header announces `claim`, the body holds one literal byte and a copy.
            let mut snappy = Vec::new();
            let mut v = claim;
            while v >= 0x80 {
                snappy.push((v as u8) | 0x80);
                v >>= 7;
            }
            snappy.push(v as u8);
            snappy.extend_from_slice(&[0x00, b'x', 0xFE, 0x01, 0x00]);
            // zlib: 1 KiB of data; zstd: 10 bytes of a frame.
            let mut zlib = Vec::new();
            compress(&Compressor::Zlib { level: None }, &[7; 1024], &mut zlib).unwrap();
            let mut zstd = Vec::new();
            compress(&Compressor::Zstd, &[7; 1024], &mut zstd).unwrap();
            for (id, input) in [(SNAPPY_ID, snappy), (ZLIB_ID, zlib), (ZSTD_ID, zstd)] {
                let mut out = Vec::new();
                let err = decompress(id, &input, claim, &mut out).unwrap_err();
                assert!(
                    matches!(
                        err,
                        WireError::DecompressedSizeMismatch { .. } | WireError::Compression(_)
                    ),
                    "{id}: {err:?}"
                );
                assert!(out.capacity() <= 64 * 1024, "{id}: {}", out.capacity());
            }
        }
    }

    #[test]
    fn the_snappy_walk_agrees_with_the_decoder() {
        let mut good = Vec::new();
        compress(&Compressor::Snappy, &sample(), &mut good).unwrap();
        assert_eq!(snappy_output_len(&good), Ok(sample().len()));
        for i in 0..good.len() {
            for v in [
                0x00,
                0x01,
                0x02,
                0x03,
                0x3F,
                0x80,
                0xFF,
                good[i].wrapping_add(1),
            ] {
                let mut bad = good.clone();
                bad[i] = v;
                if let Ok(len) = snappy_output_len(&bad) {
                    // Whatever the walk accepts, the decoder decodes to that length.
                    let out = snap::raw::Decoder::new().decompress_vec(&bad);
                    assert_eq!(out.map(|o| o.len()).ok(), Some(len), "byte {i} = {v:#x}");
                }
            }
        }
        for n in 0..good.len() {
            assert!(snappy_output_len(&good[..n]).is_err());
        }
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let garbage = [0xffu8; 64];
        for id in [SNAPPY_ID, ZLIB_ID, ZSTD_ID] {
            let mut out = Vec::new();
            assert!(decompress(id, &garbage, 64, &mut out).is_err(), "id {id}");
            assert!(out.is_empty());
        }
    }

    #[test]
    fn a_reused_decompressor_survives_errors() {
        let input = sample();
        let mut compressed = Vec::new();
        compress(&Compressor::Zstd, &input, &mut compressed).unwrap();
        let mut d = Decompressor::new();
        for _ in 0..3 {
            let mut out = Vec::new();
            assert!(d.decompress(ZSTD_ID, &[0xff; 32], 10, &mut out).is_err());
            d.decompress(ZSTD_ID, &compressed, input.len(), &mut out)
                .unwrap();
            assert_eq!(out, input);
        }
    }

    #[test]
    fn unknown_compressor_id() {
        let mut out = Vec::new();
        assert_eq!(
            decompress(4, b"x", 1, &mut out),
            Err(WireError::UnknownCompressor(4))
        );
        assert_eq!(name_of(4), None);
        assert_eq!(name_of(ZSTD_ID), Some("zstd"));
    }

    #[test]
    fn invalid_zlib_level() {
        let mut out = vec![1];
        let err = compress(&Compressor::Zlib { level: Some(10) }, b"abc", &mut out).unwrap_err();
        assert!(matches!(err, WireError::Compression(_)));
        assert_eq!(out, vec![1]);
    }

    #[test]
    fn zlib_level_changes_output() {
        let input = sample();
        let mut stored = Vec::new();
        compress(&Compressor::Zlib { level: Some(0) }, &input, &mut stored).unwrap();
        let mut best = Vec::new();
        compress(&Compressor::Zlib { level: Some(9) }, &input, &mut best).unwrap();
        assert!(stored.len() > input.len(), "level 0 stores");
        assert!(best.len() < input.len() / 2, "level 9 compresses");
    }
}
