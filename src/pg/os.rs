//! The operating system calls the standard library lacks.

use std::ffi::{c_int, c_uint, c_ulong};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

extern "C" {
    fn ioctl(fd: c_int, request: c_ulong, ...) -> c_int;
}

/// Linux's SIOCOUTQ (= TIOCOUTQ): bytes in a TCP socket's send queue.
const SIOCOUTQ: c_ulong = 0x5411;

/// Bytes written to `s` that the peer's TCP stack has not acknowledged yet (None if the
/// kernel does not say).
pub fn tcp_unacked(s: &TcpStream) -> Option<usize> {
    let mut n: c_int = 0;
    // SAFETY: SIOCOUTQ writes one int through the pointer, which points at `n`; the fd is the
    // stream's own, open while `s` is borrowed.
    let rc = unsafe { ioctl(s.as_raw_fd(), SIOCOUTQ, &mut n as *mut c_int) };
    (rc == 0 && n >= 0).then_some(n as usize)
}

extern "C" {
    fn setpriority(which: c_int, who: c_uint, prio: c_int) -> c_int;
}

/// Lowers this process's CPU priority by `nice` steps (as `nice(1)` does), so that it runs on
/// what the other processes leave. False when the kernel refused.
pub fn lower_priority(nice: i32) -> bool {
    const PRIO_PROCESS: c_int = 0;
    // SAFETY: plain integers; who = 0 is the calling process.
    unsafe { setpriority(PRIO_PROCESS, 0, nice) == 0 }
}
