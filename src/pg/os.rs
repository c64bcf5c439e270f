//! The operating system calls the standard library lacks.

use std::ffi::{c_int, c_ulong};
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
