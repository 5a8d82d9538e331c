//! A global allocator that keeps hostile length fields from aborting the process.
//!
//! The `kafka-protocol` decoders (0.18) size `Vec`s from element counts read off the
//! wire before checking that the bytes are there: a 20-byte frame can ask for a
//! 150 GB array. An allocation the kernel refuses makes Rust abort, which would take
//! the broker down for every client. Requests of at least [`LARGE_ALLOCATION_BYTES`]
//! are therefore served by anonymous `MAP_NORESERVE` mappings: address space only,
//! with pages committed on first touch. A bogus count then costs nothing, the decoder
//! fails on the short buffer, and the connection is closed as for any malformed frame.
//! Legitimate allocations are far below the threshold (frames are capped by
//! `socket.request.max.bytes`) and go to the system allocator unchanged.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;

/// Allocations at least this large are served by `mmap(MAP_NORESERVE)`.
pub const LARGE_ALLOCATION_BYTES: usize = 512 << 20;
const PAGE_BYTES: usize = 4096;

/// See the module documentation. Install with
/// `#[global_allocator] static ALLOC: GuardedAlloc = GuardedAlloc;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct GuardedAlloc;

fn is_large(layout: &Layout) -> bool {
    layout.size() >= LARGE_ALLOCATION_BYTES && layout.align() <= PAGE_BYTES
}

unsafe fn map(size: usize) -> *mut u8 {
    // SAFETY: an anonymous private mapping has no preconditions; failure is
    // reported as MAP_FAILED, which we turn into null like any allocator.
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        ptr::null_mut()
    } else {
        p.cast()
    }
}

unsafe fn unmap(p: *mut u8, size: usize) {
    // SAFETY: `p` and `size` describe a mapping made by `map` (callers guarantee it:
    // the layout passed to dealloc/realloc is the one the block was allocated with).
    let rc = unsafe { libc::munmap(p.cast(), size) };
    assert_eq!(rc, 0, "munmap of a large allocation failed");
}

// SAFETY: small layouts are forwarded to `System` untouched; large ones are page
// aligned anonymous mappings (alignment <= page size is checked by `is_large`), zero
// filled, released with the same size they were created with. A block is large or
// small by its layout, which the caller passes back unchanged on dealloc/realloc.
unsafe impl GlobalAlloc for GuardedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            unsafe { map(layout.size()) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(&layout) {
            unsafe { map(layout.size()) } // anonymous mappings are zero filled
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        if is_large(&layout) {
            unsafe { unmap(p, layout.size()) }
        } else {
            unsafe { System.dealloc(p, layout) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return ptr::null_mut();
        };
        if !is_large(&layout) && !is_large(&new_layout) {
            return unsafe { System.realloc(p, layout, new_size) };
        }
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are live and at least min(old, new) bytes long.
            unsafe {
                ptr::copy_nonoverlapping(p, new, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_blocks_round_trip_and_are_zeroed() {
        let a = GuardedAlloc;
        let layout = Layout::from_size_align(LARGE_ALLOCATION_BYTES, 64).expect("layout");
        unsafe {
            let p = a.alloc_zeroed(layout);
            assert!(!p.is_null());
            assert_eq!(*p.add(12345), 0);
            *p.add(7) = 9;
            let q = a.realloc(p, layout, LARGE_ALLOCATION_BYTES * 2);
            assert_eq!(*q.add(7), 9);
            let big = Layout::from_size_align(LARGE_ALLOCATION_BYTES * 2, 64).expect("layout");
            let r = a.realloc(q, big, 64);
            assert_eq!(*r.add(7), 9);
            a.dealloc(r, Layout::from_size_align(64, 64).expect("layout"));
        }
    }

    #[test]
    fn an_absurd_vec_capacity_does_not_abort() {
        // What a hostile array count asks of the decoder: ~150 GB.
        let v: Vec<[u8; 72]> = Vec::with_capacity(2_000_000_000);
        assert!(v.capacity() >= 2_000_000_000);
    }
}
