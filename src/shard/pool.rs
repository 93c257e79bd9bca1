//! Shard-local pool of relay buffers. A session borrows a buffer only while
//! bytes are in flight and gives it back when a read would block with nothing
//! buffered, so an idle session holds no buffer at all.

use std::cell::RefCell;
use std::rc::Rc;

/// A pool of equally sized byte buffers; `!Send`, lives on one shard.
pub struct BufPool {
    size: usize,
    max_idle: usize,
    free: RefCell<Vec<Box<[u8]>>>,
}

impl BufPool {
    /// Buffers of `size` bytes; at most `max_idle` are kept for reuse.
    pub fn new(size: usize, max_idle: usize) -> Rc<BufPool> {
        Rc::new(BufPool {
            size,
            max_idle,
            free: RefCell::new(Vec::new()),
        })
    }

    /// Bytes per buffer.
    pub fn buf_size(&self) -> usize {
        self.size
    }

    /// Takes a buffer (allocates only when the pool is empty).
    pub fn take(&self) -> Box<[u8]> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; self.size].into_boxed_slice())
    }

    /// Returns a buffer; beyond `max_idle` it is freed.
    pub fn give(&self, b: Box<[u8]>) {
        let mut f = self.free.borrow_mut();
        if f.len() < self.max_idle && b.len() == self.size {
            f.push(b);
        }
    }

    /// Buffers waiting for reuse.
    pub fn idle(&self) -> usize {
        self.free.borrow().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_and_bounds() {
        let p = BufPool::new(64, 1);
        let a = p.take();
        let ptr = a.as_ptr();
        p.give(a);
        let b = p.take();
        assert_eq!(b.as_ptr(), ptr, "the same buffer comes back");
        let c = p.take();
        p.give(b);
        p.give(c);
        assert_eq!(p.idle(), 1, "no more than max_idle kept");
    }
}
