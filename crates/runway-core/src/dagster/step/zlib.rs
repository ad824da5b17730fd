//! The compressed step input of `dagster api execute_step`.
//!
//! Every step of a deployment starts its input alike: the `ExecuteStepArgs`
//! class name and the instance ref, about three quarters of a typical step's
//! 4 KiB. That start is deflated once per thread and kept. A step's stream
//! is then the zlib header, the kept blocks, the rest of its input in one
//! stored (uncompressed) block, and the Adler-32 of the whole input: any
//! inflater reads it as one stream. Compressing the rest instead would save
//! about 480 characters of the base64 argument (2,148 against 2,628 on the
//! test fixture), and each new deflate stream begins by clearing zlib-rs's
//! 128 KiB hash table, which is what kept compression costly.

use std::cell::RefCell;

use crate::recent::Recent;

/// Inputs up to this size compress at level 1: even incompressible, their
/// base64 stays far below Linux's 128 KiB limit on one argument. It is also
/// the longest start kept.
const FAST_LEVEL_MAX: usize = 32 * 1024;

/// A shorter shared start is compressed with the rest (nothing worth keeping).
const KEPT_START_MIN: usize = 512;

/// The longest rest written stored; a longer one is compressed with the start.
/// Below 65,535 bytes, so one stored block holds it.
const STORED_REST_MAX: usize = 4 * 1024;

/// Starts kept per thread: the deployments (instance refs) a worker serves.
const KEPT_STARTS: usize = 4;

/// CMF 0x78: deflate with a 32 KiB window. FLG 0x01: the fastest level, no
/// preset dictionary, and check bits making 0x7801 a multiple of 31. The
/// header zlib writes at level 1.
const ZLIB_HEADER: [u8; 2] = [0x78, 0x01];

thread_local! {
    // Setting up a deflate state cost about as much as compressing a step's
    // arguments; one per level and thread is reset and reused instead.
    static FAST: RefCell<flate2::Compress> =
        RefCell::new(flate2::Compress::new(flate2::Compression::new(1), true));
    static DEFAULT: RefCell<flate2::Compress> =
        RefCell::new(flate2::Compress::new(flate2::Compression::new(6), true));
    /// Raw deflate blocks of a kept start, by the start's bytes.
    static STARTS: RefCell<Recent<Vec<u8>, Vec<u8>>> = const { RefCell::new(Recent::new(KEPT_STARTS)) };
}

/// `zlib.compress(data)` as Dagster compresses step input: a zlib stream the
/// step's `dagster api execute_step` inflates. `data[..shared]` is the start
/// other steps share. Dagster's level 6 costs about twice level 1's time for
/// a quarter fewer bytes on a typical step's few KiB of JSON (3.9 KiB: 1,215
/// against 1,601 bytes), so small inputs take level 1 (the stream is as
/// valid; the parity suites compare the Jobs' inputs inflated).
pub(super) fn zlib_compress(data: &[u8], shared: usize) -> Result<Vec<u8>, flate2::CompressError> {
    let (start, rest) = data.split_at(shared.min(data.len()));
    if !(KEPT_START_MIN..=FAST_LEVEL_MAX).contains(&start.len()) || rest.len() > STORED_REST_MAX {
        return compress_whole(data);
    }
    let mut out = Vec::with_capacity(start.len() / 2 + rest.len() + 16);
    out.extend_from_slice(&ZLIB_HEADER);
    push_kept_start(&mut out, start)?;
    push_final_stored(&mut out, rest);
    out.extend_from_slice(&zlib_rs::adler32::adler32(1, data).to_be_bytes());
    Ok(out)
}

/// Appends the deflate blocks of `start`, ending on a byte boundary, from
/// this thread's kept starts or deflated now and kept. A hit compares the
/// bytes, so it is exact.
fn push_kept_start(out: &mut Vec<u8>, start: &[u8]) -> Result<(), flate2::CompressError> {
    let hit = STARTS.with(|kept| {
        let kept = kept.borrow();
        let blocks = kept.find(|s| s.as_slice() == start);
        blocks.map(|blocks| out.extend_from_slice(blocks)).is_some()
    });
    if hit {
        return Ok(());
    }
    let blocks = deflate_start(start)?;
    out.extend_from_slice(&blocks);
    STARTS.with(|kept| kept.borrow_mut().keep(start.to_vec(), blocks));
    Ok(())
}

/// Raw deflate of `start` at level 1, closed by a sync flush: the blocks end
/// on a byte boundary and none is marked final, so more blocks can follow.
fn deflate_start(start: &[u8]) -> Result<Vec<u8>, flate2::CompressError> {
    let mut z = flate2::Compress::new(flate2::Compression::new(1), false);
    let mut out = Vec::with_capacity(start.len() + start.len() / 1000 + 64);
    loop {
        let taken = taken_in(&z, start.len());
        z.compress_vec(&start[taken..], &mut out, flate2::FlushCompress::Sync)?;
        // The flush is complete once all input is in and room was left over.
        if taken_in(&z, start.len()) == start.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity().max(64));
    }
}

/// The last block: `rest` stored as it is (BFINAL set, BTYPE 00), then its
/// length and the length's complement, little-endian. The blocks before end
/// on a byte boundary, so the header takes a byte of its own.
fn push_final_stored(out: &mut Vec<u8>, rest: &[u8]) {
    // STORED_REST_MAX keeps a rest within one block; the whole-input path takes longer ones.
    let len = u16::try_from(rest.len()).unwrap_or(u16::MAX);
    out.push(0x01);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(&rest[..usize::from(len)]);
}

/// The whole input through one reused zlib stream.
fn compress_whole(data: &[u8]) -> Result<Vec<u8>, flate2::CompressError> {
    let state = if data.len() <= FAST_LEVEL_MAX {
        &FAST
    } else {
        &DEFAULT
    };
    state.with(|cell| {
        let mut z = cell.borrow_mut();
        z.reset();
        // Deflate never grows input by more than a few bytes per 16 KiB block.
        let mut out = Vec::with_capacity(data.len() + data.len() / 1000 + 64);
        loop {
            let taken = taken_in(&z, data.len());
            let status = z.compress_vec(&data[taken..], &mut out, flate2::FlushCompress::Finish)?;
            if status == flate2::Status::StreamEnd {
                return Ok(out);
            }
            out.reserve(out.capacity().max(64));
        }
    })
}

/// How much of an input of `len` bytes the stream has taken.
fn taken_in(z: &flate2::Compress, len: usize) -> usize {
    usize::try_from(z.total_in()).unwrap_or(usize::MAX).min(len)
}

#[cfg(test)]
mod tests;
