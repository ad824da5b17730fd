//! The allocator every Runway process (and bench) installs: mimalloc, entered
//! through its plain `mi_malloc` family whenever the layout's alignment is
//! one mimalloc gives every block anyway.
//!
//! Why not the `mimalloc` crate's `MiMalloc`: it sends every allocation
//! through `mi_malloc_aligned`, and mimalloc 3 serves an aligned request
//! from its fast path only when the block is at most 1 KiB; larger ones
//! whose size class is not a power of two take the over-allocating path
//! (a bigger block, marked aligned, slower to free). A rendered Job's
//! buffers, the dev cluster's serialized objects and every serde buffer
//! over 1 KiB went that way. Every mimalloc block is aligned to at least a
//! machine word (block sizes are whole words and pages start 16-aligned),
//! so a layout aligned to a word or less needs nothing more than `mi_malloc`.
//! Larger alignments keep the aligned calls.

#![no_std]

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;

use libmimalloc_sys as ffi;

/// The alignment every mimalloc block has.
const WORD: usize = size_of::<usize>();

/// mimalloc as the global allocator.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mimalloc;

// SAFETY: every method forwards to mimalloc, whose blocks are valid until
// freed, at least `size` bytes, and aligned to `layout.align()`: by `WORD`
// for alignments up to a word, by the aligned calls otherwise.
unsafe impl GlobalAlloc for Mimalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: plain C calls with a size and a power-of-two alignment.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_malloc(layout.size()).cast()
            } else {
                ffi::mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_zalloc(layout.size()).cast()
            } else {
                ffi::mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this allocator (the caller's contract);
        // `mi_free` frees aligned and plain blocks alike.
        unsafe { ffi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from this allocator with `layout` (the caller's
        // contract); the new block keeps the alignment by the same rule.
        unsafe {
            if layout.align() <= WORD {
                ffi::mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                ffi::mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// Every size from a byte to 64 KiB (and some beyond, into mimalloc's
    /// large and huge blocks) at every alignment up to 4 KiB: the block is
    /// aligned, writable over its whole size, kept across a realloc that
    /// grows and one that shrinks, and zeroed when asked.
    #[test]
    fn blocks_are_aligned_sized_and_kept() {
        let sizes = (1..=4096).step_by(7).chain([
            8,
            16,
            24,
            1024,
            1025,
            1500,
            4096,
            65_536,
            1 << 20,
            9 << 20,
        ]);
        for size in sizes {
            for align in [1, 2, 4, 8, 16, 32, 64, 4096] {
                check(Layout::from_size_align(size, align).unwrap());
            }
        }
    }

    fn check(layout: Layout) {
        let a = Mimalloc;
        let (size, align) = (layout.size(), layout.align());
        // Every byte of the small blocks; a byte per page of the huge ones.
        let step = if size > 65_536 { 4096 } else { 1 };
        // SAFETY: non-zero sizes; every pointer is checked and freed once
        // with the layout it was made with.
        unsafe {
            let z = a.alloc_zeroed(layout);
            assert!(
                !z.is_null() && (z as usize).is_multiple_of(align),
                "{layout:?}"
            );
            assert!(
                (0..size).step_by(step).all(|i| *z.add(i) == 0),
                "not zeroed: {layout:?}"
            );
            a.dealloc(z, layout);

            let p = a.alloc(layout);
            assert!(
                !p.is_null() && (p as usize).is_multiple_of(align),
                "{layout:?}"
            );
            for i in (0..size).step_by(step) {
                *p.add(i) = i as u8;
            }
            let grown = a.realloc(p, layout, size * 2 + 1);
            assert!(
                !grown.is_null() && (grown as usize).is_multiple_of(align),
                "{layout:?}"
            );
            assert!(
                (0..size).step_by(step).all(|i| *grown.add(i) == i as u8),
                "lost: {layout:?}"
            );
            let grown_layout = Layout::from_size_align(size * 2 + 1, align).unwrap();
            let shrunk = a.realloc(grown, grown_layout, size.div_ceil(2));
            assert!((shrunk as usize).is_multiple_of(align), "{layout:?}");
            assert!((0..size.div_ceil(2))
                .step_by(step)
                .all(|i| *shrunk.add(i) == i as u8));
            a.dealloc(
                shrunk,
                Layout::from_size_align(size.div_ceil(2), align).unwrap(),
            );
        }
    }
}
