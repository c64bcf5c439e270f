//! Where a forwarder sends its lines and how: `udp://host:port` (RFC 5426, one line a
//! datagram), `tcp://host:port` (RFC 6587 octet counting: `LEN SP LINE`), `tls://host:port`
//! (RFC 5425: the same framing inside TLS, rustls, the server's certificate checked against
//! `audit_ext.tls_ca_file` and the host name). Plain Rust and the standard library's sockets;
//! no PostgreSQL here (a forwarder sends outside any transaction).
//!
//! What "the receiver took it" means: syslog over TCP has no acknowledgement of its own, so a
//! line counts as taken when the receiver's TCP stack acknowledged every byte sent
//! ([`Conn::unacked`] is 0) and the connection was still open a moment later
//! (`CONFIRM_AFTER_US` in worker.rs). UDP has neither: a datagram counts as taken once sent.

use crate::pg::os;
use audit_core::forward::{frame, Scheme, Target};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

/// How long a connection attempt, a TLS handshake or one write may take.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A target's addresses.
fn addrs(t: &Target) -> io::Result<Vec<SocketAddr>> {
    Ok((t.host.as_str(), t.port).to_socket_addrs()?.collect())
}
/// An open connection to a receiver.
pub enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

fn tcp(t: &Target) -> Result<TcpStream, String> {
    let addrs = addrs(t).map_err(|e| format!("cannot resolve {}: {e}", t.host))?;
    let mut last = format!("{} resolves to no address", t.host);
    for a in addrs {
        match TcpStream::connect_timeout(&a, IO_TIMEOUT) {
            Ok(s) => {
                s.set_write_timeout(Some(IO_TIMEOUT)).ok();
                s.set_read_timeout(Some(IO_TIMEOUT)).ok();
                s.set_nodelay(true).ok();
                return Ok(s);
            }
            Err(e) => last = format!("cannot connect to {a}: {e}"),
        }
    }
    Err(last)
}

/// The TLS client settings: trust anchors from `ca_file` (PEM) only.
fn tls_config(ca_file: Option<&str>) -> Result<Arc<rustls::ClientConfig>, String> {
    let ca_file = ca_file.filter(|f| !f.is_empty()).ok_or_else(|| {
        "audit_ext.tls_ca_file is not set (the CA certificates a tls:// receiver is checked against)".to_string()
    })?;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .map_err(|e| format!("cannot read audit_ext.tls_ca_file {ca_file:?}: {e}"))?;
    for c in certs {
        let c = c.map_err(|e| format!("audit_ext.tls_ca_file {ca_file:?}: {e}"))?;
        roots.add(c).map_err(|e| format!("audit_ext.tls_ca_file {ca_file:?}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("audit_ext.tls_ca_file {ca_file:?} holds no certificate"));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Connects (and for TLS completes the handshake, so a bad certificate is reported here).
pub fn connect(t: &Target, ca_file: Option<&str>) -> Result<Conn, String> {
    match t.scheme {
        Scheme::Udp => {
            let addrs = addrs(t).map_err(|e| format!("cannot resolve {}: {e}", t.host))?;
            let a = *addrs.first().ok_or_else(|| format!("{} resolves to no address", t.host))?;
            let bind: SocketAddr = if a.is_ipv6() { "[::]:0".parse().unwrap() } else { "0.0.0.0:0".parse().unwrap() };
            let s = UdpSocket::bind(bind).map_err(|e| format!("UDP socket: {e}"))?;
            s.connect(a).map_err(|e| format!("UDP {a}: {e}"))?;
            Ok(Conn::Udp(s))
        }
        Scheme::Tcp => Ok(Conn::Tcp(tcp(t)?)),
        Scheme::Tls => {
            let config = tls_config(ca_file)?;
            let name = ServerName::try_from(t.host.clone()).map_err(|e| format!("TLS: host {:?}: {e}", t.host))?;
            let conn = rustls::ClientConnection::new(config, name).map_err(|e| format!("TLS: {e}"))?;
            let mut sock = tcp(t)?;
            let mut conn = conn;
            while conn.is_handshaking() {
                conn.complete_io(&mut sock).map_err(|e| format!("TLS handshake with {}:{}: {e}", t.host, t.port))?;
            }
            Ok(Conn::Tls(Box::new(rustls::StreamOwned::new(conn, sock))))
        }
    }
}

/// The largest datagram UDP carries (65,535 bytes less the IPv4 and UDP headers).
const UDP_MAX: usize = 65_507;

/// How much of a line fits in one datagram: all of it, or its first [`UDP_MAX`] bytes cut at
/// a character boundary (RFC 5426 lets a message be truncated; a datagram too large would be
/// refused by the kernel at every try, and the forwarder would never get past it).
fn udp_cut(l: &str) -> usize {
    if l.len() <= UDP_MAX {
        return l.len();
    }
    (0..=UDP_MAX).rev().find(|&i| l.is_char_boundary(i)).unwrap_or(0)
}

impl Conn {
    /// Sends lines. UDP: a datagram each; TCP and TLS: octet-counted, in one write.
    pub fn send(&mut self, lines: &[&str]) -> Result<(), String> {
        match self {
            Conn::Udp(s) => {
                for (i, l) in lines.iter().enumerate() {
                    s.send(&l.as_bytes()[..udp_cut(l)]).map_err(|e| format!("UDP send: {e}"))?;
                    // a receiver on the same machine reads slower than a loop writes: pace
                    // bursts so the socket buffers do not overflow (UDP drops without a word)
                    if i % 64 == 63 {
                        std::thread::sleep(Duration::from_micros(500));
                    }
                }
                Ok(())
            }
            Conn::Tcp(s) => s.write_all(&frame(lines)).and_then(|_| s.flush()).map_err(|e| format!("TCP send: {e}")),
            Conn::Tls(s) => s.write_all(&frame(lines)).and_then(|_| s.flush()).map_err(|e| format!("TLS send: {e}")),
        }
    }

    /// Bytes sent that the receiver's TCP stack has not acknowledged yet (0 for UDP).
    pub fn unacked(&self) -> Option<usize> {
        match self {
            Conn::Udp(_) => Some(0),
            Conn::Tcp(s) => os::tcp_unacked(s),
            Conn::Tls(s) => os::tcp_unacked(&s.sock),
        }
    }

    pub fn acknowledges(&self) -> bool {
        !matches!(self, Conn::Udp(_))
    }

    /// Whether the receiver still holds the connection open: false once it closed it (EOF,
    /// a reset, a TLS close_notify). Does not block.
    pub fn alive(&mut self) -> bool {
        match self {
            Conn::Udp(_) => true,
            Conn::Tcp(s) => {
                if s.set_nonblocking(true).is_err() {
                    return false;
                }
                let mut b = [0u8; 256];
                let alive = match s.read(&mut b) {
                    Ok(0) => false,
                    Ok(_) => true, // a receiver that talks (none should): ignored
                    Err(e) => e.kind() == io::ErrorKind::WouldBlock,
                };
                s.set_nonblocking(false).is_ok() && alive
            }
            Conn::Tls(s) => {
                if s.sock.set_nonblocking(true).is_err() {
                    return false;
                }
                let alive = loop {
                    match s.conn.read_tls(&mut s.sock) {
                        Ok(0) => break false,
                        Ok(_) => match s.conn.process_new_packets() {
                            Ok(st) if st.peer_has_closed() => break false,
                            Ok(_) => {
                                let mut b = [0u8; 256];
                                while let Ok(n) = s.conn.reader().read(&mut b) {
                                    if n == 0 {
                                        break;
                                    }
                                }
                            }
                            Err(_) => break false,
                        },
                        Err(e) => break e.kind() == io::ErrorKind::WouldBlock,
                    }
                };
                s.sock.set_nonblocking(false).is_ok() && alive
            }
        }
    }
}
