//! The only place storage maps files into memory.
#![allow(unsafe_code)]

use std::fs::File;

use memmap2::{Mmap, MmapMut};

// SAFETY (both functions): index files live in a partition directory that only this
// process writes. A mapped file is never truncated while the mapping exists: callers
// drop the mapping before `set_len` and map again afterwards, so no access can fall
// past the end of the file.

pub(crate) fn map_read(file: &File) -> std::io::Result<Mmap> {
    unsafe { Mmap::map(file) }
}

pub(crate) fn map_write(file: &File) -> std::io::Result<MmapMut> {
    unsafe { MmapMut::map_mut(file) }
}
