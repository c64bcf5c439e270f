//! Forwarders' targets and framing (src/forward/ in audit_ext): `scheme://host:port`, and
//! RFC 6587 octet counting.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    Udp,
    Tcp,
    Tls,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses `scheme://host:port` (an IPv6 address in brackets).
    pub fn parse(s: &str) -> Result<Target, String> {
        let (scheme, rest) = s.split_once("://").ok_or_else(|| format!("target {s:?} has no scheme"))?;
        let scheme = match scheme {
            "udp" => Scheme::Udp,
            "tcp" => Scheme::Tcp,
            "tls" => Scheme::Tls,
            other => return Err(format!("target {s:?}: unknown scheme {other:?}")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (host, port) = match rest.strip_prefix('[') {
            Some(r) => r.split_once("]:").ok_or_else(|| format!("target {s:?}: no port after the IPv6 address"))?,
            None => rest.rsplit_once(':').ok_or_else(|| format!("target {s:?} has no port"))?,
        };
        let port: u16 =
            port.parse().ok().filter(|&p| p != 0).ok_or_else(|| format!("target {s:?}: bad port {port:?}"))?;
        if host.is_empty() || host.len() > 253 || !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
        {
            return Err(format!("target {s:?}: bad host {host:?}"));
        }
        Ok(Target { scheme, host: host.to_string(), port })
    }
}

/// RFC 6587 octet-counting framing of lines: `LEN SP LINE` each, LEN the line's bytes.
pub fn frame(lines: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(lines.iter().map(|l| l.len() + 8).sum());
    for l in lines {
        out.extend_from_slice(l.len().to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(l.as_bytes());
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn targets() {
        let t = Target::parse("tcp://127.0.0.1:6514").unwrap();
        assert_eq!((t.scheme, t.host.as_str(), t.port), (Scheme::Tcp, "127.0.0.1", 6514));
        let t = Target::parse("tls://[::1]:6514").unwrap();
        assert_eq!((t.scheme, t.host.as_str()), (Scheme::Tls, "::1"));
        assert_eq!(Target::parse("udp://siem.example.com:514/").unwrap().host, "siem.example.com");
        for bad in
            ["tcp://h", "http://h:1", "tcp://:1", "tcp://h:0", "tcp://h:99999", "h:1", "tcp://a b:1", "tcp://u@h:1"]
        {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn octet_counting() {
        assert_eq!(frame(&["ab", "é"]), b"2 ab2 \xc3\xa9".to_vec());
    }
}
