// wsrelay patch (WSRELAY-PATCH.md, "Read readiness by one epoll set per
// executor"): the read readiness of every socket of an executor comes from
// one epoll set, registered edge-triggered once per socket, instead of from
// one io_uring poll per socket.
//
// Why: a multishot `POLL_ADD` per socket posts one completion per readiness
// event, and each is io_uring task work (`io_poll_task_func`, re-polling the
// socket and posting a CQE) run at the exit of the executor's next syscall:
// about 6 % of a shard's CPU at 64-byte messages. An epoll set pays
// `ep_poll_callback` per event (what nginx pays) and one `epoll_wait` per
// batch; the set itself is watched by one multishot poll on its descriptor,
// so the executor still sleeps in `io_uring_enter` and wakes when any socket
// of the set becomes readable.
//
// A socket is registered with `EPOLLIN | EPOLLRDHUP | EPOLLET` and its slot's
// key (index and generation) as the event's data. The slot keeps the events
// seen since its stream last looked and the waker of a read waiting for
// them. Closing the socket removes it from the set (the kernel does that when
// the last reference to the file goes; a stale event of a reused slot is
// told apart by the generation), so a session's end costs no syscall here.
use crate::{reactor::Reactor, sys::Source};
use std::{
    cell::{Cell, RefCell},
    io,
    num::NonZeroU64,
    os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    task::Waker,
};

/// A socket's place in its executor's read set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadKey(NonZeroU64);

impl ReadKey {
    fn new(index: u32, generation: u32) -> ReadKey {
        // The generation starts at 1, so the key is never zero.
        ReadKey(NonZeroU64::new((u64::from(generation) << 32) | u64::from(index)).unwrap())
    }

    fn index(self) -> usize {
        (self.0.get() & 0xffff_ffff) as usize
    }

    fn generation(self) -> u32 {
        (self.0.get() >> 32) as u32
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// 0 while free; bumped when the slot is freed.
    generation: u32,
    /// Whether the slot belongs to a stream.
    used: bool,
    /// The events seen since the stream last looked.
    events: u32,
    waker: Option<Waker>,
}

#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Slot>,
    free: Vec<u32>,
}

/// Events asked for: bytes, and the peer's end (so that bytes and a FIN that
/// come together are one event; see `NonBufferedStream::poll_read`).
const WANTED: u32 = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
/// Events after which a read that comes back short has not drained the
/// socket: the next read returns the end or the error.
pub(crate) const END: u32 = (libc::EPOLLRDHUP | libc::EPOLLHUP | libc::EPOLLERR) as u32;
/// How many events one `epoll_wait` takes.
const BATCH: usize = 64;

thread_local! {
    static EPOLL_WAITS: Cell<u64> = const { Cell::new(0) };
}

/// `epoll_wait` calls this thread made (wsrelay patch, for tests).
pub(crate) fn epoll_waits() -> u64 {
    EPOLL_WAITS.with(|c| c.get())
}

#[derive(Debug)]
pub(crate) struct ReadSet {
    epfd: OwnedFd,
    /// The multishot poll of `epfd`; armed again if the kernel ends it.
    watch: RefCell<Option<Source>>,
    slots: RefCell<Slots>,
}

impl ReadSet {
    pub(crate) fn new() -> io::Result<ReadSet> {
        // SAFETY: a plain syscall; the descriptor is owned below.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(ReadSet {
            // SAFETY: `fd` was just created and nothing else owns it.
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
            watch: RefCell::new(None),
            slots: RefCell::new(Slots::default()),
        })
    }

    /// Registers `fd`; its readiness is reported under the returned key until
    /// `release`.
    pub(crate) fn register(&self, reactor: &Reactor, fd: RawFd) -> io::Result<ReadKey> {
        let key = {
            let mut s = self.slots.borrow_mut();
            let index = match s.free.pop() {
                Some(i) => i,
                None => {
                    s.slots.push(Slot {
                        generation: 1,
                        ..Slot::default()
                    });
                    (s.slots.len() - 1) as u32
                }
            };
            let slot = &mut s.slots[index as usize];
            slot.used = true;
            slot.events = 0;
            ReadKey::new(index, slot.generation)
        };
        let mut ev = libc::epoll_event {
            events: WANTED,
            u64: key.0.get(),
        };
        // SAFETY: `ev` is a valid event; the kernel copies it.
        let rc = unsafe {
            libc::epoll_ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd,
                &mut ev as *mut libc::epoll_event,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            self.release(key);
            return Err(err);
        }
        self.ensure_watched(reactor);
        Ok(key)
    }

    /// Frees the slot. The socket leaves the epoll set when it is closed.
    pub(crate) fn release(&self, key: ReadKey) {
        let mut s = self.slots.borrow_mut();
        let slot = &mut s.slots[key.index()];
        debug_assert_eq!(slot.generation, key.generation());
        slot.used = false;
        slot.events = 0;
        slot.waker = None;
        slot.generation = slot.generation.wrapping_add(1).max(1);
        s.free.push(key.index() as u32);
    }

    /// The events seen since the last call.
    pub(crate) fn take_events(&self, key: ReadKey) -> u32 {
        std::mem::take(&mut self.slots.borrow_mut().slots[key.index()].events)
    }

    /// Wakes `waker` at the next event of `key`.
    pub(crate) fn wait(&self, reactor: &Reactor, key: ReadKey, waker: &Waker) {
        {
            let mut s = self.slots.borrow_mut();
            let slot = &mut s.slots[key.index()];
            match &slot.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => slot.waker = Some(waker.clone()),
            }
        }
        self.ensure_watched(reactor);
    }

    /// Arms the multishot poll of the set unless it is armed.
    fn ensure_watched(&self, reactor: &Reactor) {
        let mut watch = self.watch.borrow_mut();
        if watch.as_ref().is_some_and(|w| w.is_armed()) {
            return;
        }
        // Armed from a task (a socket's first read) or by the reactor outside
        // any task (`dispatch`, after the kernel ended the poll: with a full
        // completion queue, say), so it belongs to no task queue.
        let source = reactor.poll_read_ready_multi_unqueued(self.epfd.as_raw_fd());
        // A completion of the watch counts as a wake-up, so the executor does
        // not go to sleep with events it has not dispatched (see `dispatch`).
        source.add_waiter_single(Waker::noop());
        *watch = Some(source);
    }

    /// Has the kernel end the watch, as it does when it cannot post a
    /// completion (for tests: the reactor must arm it again by itself).
    pub(crate) fn end_watch(&self) -> bool {
        self.watch
            .borrow()
            .as_ref()
            .is_some_and(|w| w.cancel_in_kernel())
    }

    /// Takes the events the watch reported, if it reported any, and wakes
    /// the reads waiting for them; returns how many it woke. Called by the
    /// reactor outside its rings (it may arm the watch again).
    pub(crate) fn dispatch(&self, reactor: &Reactor) -> usize {
        {
            let watch = self.watch.borrow();
            let Some(w) = watch.as_ref() else { return 0 };
            if w.take_result().is_none() && w.is_armed() {
                return 0;
            }
            w.add_waiter_single(Waker::noop());
        }
        let mut woke = 0;
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; BATCH];
        loop {
            // SAFETY: `events` has room for `BATCH` events.
            let n = unsafe {
                libc::epoll_wait(
                    self.epfd.as_raw_fd(),
                    events.as_mut_ptr(),
                    BATCH as libc::c_int,
                    0,
                )
            };
            EPOLL_WAITS.with(|c| c.set(c.get() + 1));
            if n <= 0 {
                break;
            }
            let mut s = self.slots.borrow_mut();
            for ev in &events[..n as usize] {
                let Some(key) = NonZeroU64::new(ev.u64).map(ReadKey) else {
                    continue;
                };
                let Some(slot) = s.slots.get_mut(key.index()) else {
                    continue;
                };
                if !slot.used || slot.generation != key.generation() {
                    continue; // a socket of a freed slot
                }
                slot.events |= ev.events;
                if let Some(w) = slot.waker.take() {
                    w.wake();
                    woke += 1;
                }
            }
            if (n as usize) < BATCH {
                break;
            }
        }
        self.ensure_watched(reactor);
        woke
    }
}
