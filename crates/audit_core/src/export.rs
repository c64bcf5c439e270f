//! One event as a line of each export format (`audit.export`, README "Export"): key=value
//! (also the `AUDIT:` lines of the server-log mirror), CSV (RFC 4180), ArcSight CEF:0 and
//! syslog (RFC 5424). Every line carries the event's id, chain, seq and hash, so that a
//! receiver can detect gaps and verify. JSON lines are made in SQL (`audit.export_json`, the
//! one owner of the JSON object that tests/tools/verify_export.py checks).

use std::fmt::Write;

/// One event, its values already as text (`at` in UTC, ISO 8601 with microseconds and `Z`;
/// JSON columns as PostgreSQL's jsonb text; hashes as lowercase hex). `None` is SQL NULL.
#[derive(Debug, Default, Clone)]
pub struct Event {
    pub id: i64,
    pub at: String,
    pub chain: i32,
    pub seq: i64,
    pub actor: Option<String>,
    pub actor_ip: Option<String>,
    pub session_id: Option<String>,
    pub application: Option<String>,
    pub action: String,
    pub status: String,
    pub severity: String,
    pub module: Option<String>,
    pub object_type: Option<String>,
    pub object_id: Option<String>,
    pub object_name: Option<String>,
    pub old: Option<String>,
    pub new: Option<String>,
    pub message: Option<String>,
    pub metadata: Option<String>,
    pub txid: i64,
    pub prev_hash: Option<String>,
    pub hash: String,
}

/// The formats of `audit.export`, by the name it takes (`jsonl` is made in SQL).
pub const FORMATS: [&str; 5] = ["jsonl", "csv", "cef", "rfc5424", "kv"];

/// The SD-ID of the RFC 5424 structured data: a private name at the enterprise number that
/// RFC 5612 reserves for documentation (32473); one documented name every receiver can match.
pub const SD_ID: &str = "audit_ext@32473";

/// Longest value `kv` writes whole: a syslog line is often cut at 8 KB, and `id` and `hash`
/// name the event in the log.
pub const KV_MAX_VALUE_BYTES: usize = 2000;

/// A value of `kv`, appended to `out`: bare when non-empty and made only of letters, digits
/// and `. _ : / @ + -`; else in double quotes with `\` and `"` escaped by a backslash, newline,
/// carriage return and tab as `\n`, `\r`, `\t`, other control characters as `\xNN`; cut to
/// [`KV_MAX_VALUE_BYTES`] at a character boundary. True when it was cut.
pub fn kv_value(out: &mut String, v: &str) -> bool {
    let mut end = v.len().min(KV_MAX_VALUE_BYTES);
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    let part = &v[..end];
    let bare = !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric() || "._:/@+-".contains(c));
    if bare {
        out.push_str(part);
    } else {
        out.push('"');
        for c in part.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if c.is_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
    end < v.len()
}

/// key=value: `id chain seq at action status severity actor actor_ip session_id application
/// module object_type object_id object_name message hash`, a NULL field left out, then
/// `truncated=true` when a value was cut. `old`, `new` and `metadata` are not written: `id`
/// and `hash` name the event in `audit.events`.
pub fn kv(e: &Event) -> String {
    let mut line = String::new();
    let mut cut = false;
    let (id, chain, seq) = (e.id.to_string(), e.chain.to_string(), e.seq.to_string());
    let fields: [(&str, Option<&str>); 17] = [
        ("id", Some(&id)),
        ("chain", Some(&chain)),
        ("seq", Some(&seq)),
        ("at", Some(&e.at)),
        ("action", Some(&e.action)),
        ("status", Some(&e.status)),
        ("severity", Some(&e.severity)),
        ("actor", e.actor.as_deref()),
        ("actor_ip", e.actor_ip.as_deref()),
        ("session_id", e.session_id.as_deref()),
        ("application", e.application.as_deref()),
        ("module", e.module.as_deref()),
        ("object_type", e.object_type.as_deref()),
        ("object_id", e.object_id.as_deref()),
        ("object_name", e.object_name.as_deref()),
        ("message", e.message.as_deref()),
        ("hash", Some(&e.hash)),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(key);
            line.push('=');
            cut |= kv_value(&mut line, v);
        }
    }
    if cut {
        line.push_str(" truncated=true");
    }
    line
}

/// The CSV header: the columns of `audit.events` in table order.
pub const CSV_HEADER: &str = "id,at,chain,seq,actor,actor_ip,session_id,application,action,status,severity,module,\
                              object_type,object_id,object_name,old,new,message,metadata,txid,prev_hash,hash";

/// One CSV field (RFC 4180): NULL is an empty field, anything else is quoted (`"` doubled),
/// so that an empty string (`""`) stays distinct from NULL.
fn csv_field(out: &mut String, v: Option<&str>) {
    if let Some(v) = v {
        out.push('"');
        out.push_str(&v.replace('"', "\"\""));
        out.push('"');
    }
}

/// One CSV record (RFC 4180, no line break at the end; a value holding one keeps it, quoted).
pub fn csv(e: &Event) -> String {
    let mut out = String::new();
    let (id, chain, seq, txid) = (e.id.to_string(), e.chain.to_string(), e.seq.to_string(), e.txid.to_string());
    let fields: [Option<&str>; 22] = [
        Some(&id),
        Some(&e.at),
        Some(&chain),
        Some(&seq),
        e.actor.as_deref(),
        e.actor_ip.as_deref(),
        e.session_id.as_deref(),
        e.application.as_deref(),
        Some(&e.action),
        Some(&e.status),
        Some(&e.severity),
        e.module.as_deref(),
        e.object_type.as_deref(),
        e.object_id.as_deref(),
        e.object_name.as_deref(),
        e.old.as_deref(),
        e.new.as_deref(),
        e.message.as_deref(),
        e.metadata.as_deref(),
        Some(&txid),
        e.prev_hash.as_deref(),
        Some(&e.hash),
    ];
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(&mut out, *f);
    }
    out
}

/// CEF severity (0 to 10) of an audit_ext severity.
pub fn cef_severity(severity: &str) -> u8 {
    match severity {
        "debug" => 1,
        "info" => 3,
        "notice" => 4,
        "warning" => 6,
        "high" => 8,
        "critical" => 10,
        _ => 5,
    }
}

/// `v` with each character that `map` gives a replacement for replaced, in one pass (and no
/// copy beyond the result when nothing is to be replaced).
fn escape(v: &str, map: impl Fn(char) -> Option<&'static str>) -> String {
    if !v.chars().any(|c| map(c).is_some()) {
        return v.to_string();
    }
    let mut out = String::with_capacity(v.len() + 8);
    for c in v.chars() {
        match map(c) {
            Some(r) => out.push_str(r),
            None => out.push(c),
        }
    }
    out
}

/// A CEF header field: `\` and `|` escaped with a backslash, line breaks as spaces (the
/// specification allows none in the header).
fn cef_header(v: &str) -> String {
    escape(v, |c| match c {
        '\\' => Some("\\\\"),
        '|' => Some("\\|"),
        '\r' | '\n' => Some(" "),
        _ => None,
    })
}

/// A CEF extension value: `\` and `=` escaped with a backslash, newline and carriage return
/// written as `\n` and `\r`.
fn cef_value(v: &str) -> String {
    escape(v, |c| match c {
        '\\' => Some("\\\\"),
        '=' => Some("\\="),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        _ => None,
    })
}

/// ArcSight CEF:0. Header: vendor and product `audit_ext`, `version`, signature id = action,
/// name = message (or the action), severity 0 to 10. Extension: `externalId` (the id), `rt`
/// (ms since 1970), `act`, `outcome` (status), `suser`, `src`, `requestClientApplication`,
/// `deviceFacility` (module), `msg`, and labelled custom fields `cs1` chain, `cs2` seq,
/// `cs3` hash, `cs4` object_type, `cs5` object_id, `cs6` object_name.
pub fn cef(e: &Event, version: &str, at_ms: i64) -> String {
    let mut out = format!(
        "CEF:0|audit_ext|audit_ext|{}|{}|{}|{}|",
        cef_header(version),
        cef_header(&e.action),
        cef_header(e.message.as_deref().unwrap_or(&e.action)),
        cef_severity(&e.severity)
    );
    let mut ext: Vec<(&str, String)> = vec![
        ("externalId", e.id.to_string()),
        ("rt", at_ms.to_string()),
        ("act", e.action.clone()),
        ("outcome", e.status.clone()),
        ("cs1Label", "chain".into()),
        ("cs1", e.chain.to_string()),
        ("cs2Label", "seq".into()),
        ("cs2", e.seq.to_string()),
        ("cs3Label", "hash".into()),
        ("cs3", e.hash.clone()),
    ];
    let optional = [
        ("suser", &e.actor),
        ("src", &e.actor_ip),
        ("requestClientApplication", &e.application),
        ("deviceFacility", &e.module),
        ("msg", &e.message),
    ];
    ext.extend(optional.iter().filter_map(|(k, v)| v.as_ref().map(|v| (*k, v.clone()))));
    for (label, n, v) in
        [("object_type", 4, &e.object_type), ("object_id", 5, &e.object_id), ("object_name", 6, &e.object_name)]
    {
        if let Some(v) = v {
            ext.push((["cs4Label", "cs5Label", "cs6Label"][n - 4], label.into()));
            ext.push((["cs4", "cs5", "cs6"][n - 4], v.clone()));
        }
    }
    let parts: Vec<String> = ext.iter().map(|(k, v)| format!("{k}={}", cef_value(v))).collect();
    out.push_str(&parts.join(" "));
    out
}

/// RFC 5424 severity (0 to 7) of an audit_ext severity.
pub fn syslog_severity(severity: &str) -> u8 {
    match severity {
        "critical" => 2,
        "high" => 3,
        "warning" => 4,
        "notice" => 5,
        "info" => 6,
        _ => 7,
    }
}

/// An SD-PARAM value (RFC 5424 section 6.3.3): `"`, `\` and `]` escaped with a backslash;
/// line breaks written as `\n` and `\r`, so that every event is one line (RFC 5424 keeps a
/// backslash before any other character as it is).
fn sd_value(v: &str) -> String {
    escape(v, |c| match c {
        '\\' => Some("\\\\"),
        '"' => Some("\\\""),
        ']' => Some("\\]"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        _ => None,
    })
}

/// Up to 32 printable US-ASCII characters (MSGID): others become `_`.
fn printusascii(v: &str, max: usize) -> String {
    let s: String = v.chars().take(max).map(|c| if c.is_ascii_graphic() { c } else { '_' }).collect();
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME audit_ext - MSGID [audit_ext@32473 ...] MSG`. PRI is
/// facility 13 (log audit) × 8 + the severity; HOSTNAME is `hostname` (`-` when empty);
/// MSGID the action (32 printable ASCII characters at most); the structured data carries
/// id, chain, seq, hash, action, status, severity and every non-NULL text field; MSG is the
/// message (or the action) on one line, line breaks written as `\n` (left out when empty).
pub fn rfc5424(e: &Event, hostname: &str) -> String {
    let pri = 13 * 8 + syslog_severity(&e.severity) as u32;
    let mut sd = format!("[{SD_ID}");
    let fields: [(&str, Option<String>); 16] = [
        ("id", Some(e.id.to_string())),
        ("chain", Some(e.chain.to_string())),
        ("seq", Some(e.seq.to_string())),
        ("hash", Some(e.hash.clone())),
        ("action", Some(e.action.clone())),
        ("status", Some(e.status.clone())),
        ("severity", Some(e.severity.clone())),
        ("actor", e.actor.clone()),
        ("actor_ip", e.actor_ip.clone()),
        ("session_id", e.session_id.clone()),
        ("application", e.application.clone()),
        ("module", e.module.clone()),
        ("object_type", e.object_type.clone()),
        ("object_id", e.object_id.clone()),
        ("object_name", e.object_name.clone()),
        ("txid", Some(e.txid.to_string())),
    ];
    for (k, v) in fields {
        if let Some(v) = v {
            let _ = write!(sd, " {k}=\"{}\"", sd_value(&v));
        }
    }
    sd.push(']');
    let msg = escape(e.message.as_deref().unwrap_or(&e.action), |c| match c {
        '\\' => Some("\\\\"),
        '\n' => Some("\\n"),
        '\r' => Some("\\r"),
        _ => None,
    });
    let head =
        format!("<{pri}>1 {} {} audit_ext - {} {sd}", e.at, printusascii(hostname, 255), printusascii(&e.action, 32));
    if msg.is_empty() {
        head
    } else {
        format!("{head} {msg}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        Event {
            id: 7,
            at: "2026-12-02T00:00:01.000002Z".into(),
            chain: 1,
            seq: 3,
            actor: Some("ann".into()),
            action: "order.update".into(),
            status: "success".into(),
            severity: "high".into(),
            object_id: Some("a|b=c\\d\n]\"e".into()),
            message: Some("x|y".into()),
            txid: 9,
            hash: "ab".repeat(32),
            ..Default::default()
        }
    }

    #[test]
    fn kv_quotes_and_escapes() {
        let q = |v: &str| {
            let mut s = String::new();
            let cut = kv_value(&mut s, v);
            (s, cut)
        };
        assert_eq!(q("order.update"), ("order.update".into(), false));
        assert_eq!(q(""), ("\"\"".into(), false));
        assert_eq!(q("say \"hi\"\\\n"), ("\"say \\\"hi\\\"\\\\\\n\"".into(), false));
        assert_eq!(q("x=1 id=2"), ("\"x=1 id=2\"".into(), false));
        assert_eq!(q("\u{1}"), ("\"\\x01\"".into(), false));
        let (s, cut) = q(&"é".repeat(1500));
        assert!(cut && s.len() <= KV_MAX_VALUE_BYTES + 2);
        assert!(kv(&ev()).starts_with("id=7 chain=1 seq=3 at=2026-12-02T00:00:01.000002Z action=order.update"));
    }

    #[test]
    fn csv_keeps_null_and_empty_apart() {
        let mut e = ev();
        e.module = Some(String::new());
        let line = csv(&e);
        assert!(line.starts_with("\"7\",\"2026-12-02T00:00:01.000002Z\",\"1\",\"3\",\"ann\",,,,"));
        assert!(line.contains(",\"\",")); // module ''
        assert!(line.contains("\"a|b=c\\d\n]\"\"e\""));
        assert_eq!(CSV_HEADER.split(',').count(), 22);
        assert!(line.ends_with(&format!(",\"9\",,\"{}\"", "ab".repeat(32)))); // txid, prev_hash NULL, hash
    }

    #[test]
    fn cef_escapes_header_and_extension() {
        let line = cef(&ev(), "0.2.0", 1_764_633_601_000);
        assert!(line.starts_with("CEF:0|audit_ext|audit_ext|0.2.0|order.update|x\\|y|8|externalId=7 rt=1764633601000"));
        assert!(line.contains("cs5=a|b\\=c\\\\d\\n]\"e"));
        assert!(line.contains("cs1Label=chain cs1=1 cs2Label=seq cs2=3 cs3Label=hash cs3=abab"));
    }

    #[test]
    fn rfc5424_escapes_sd_params() {
        let line = rfc5424(&ev(), "db1");
        assert!(line.starts_with("<107>1 2026-12-02T00:00:01.000002Z db1 audit_ext - order.update [audit_ext@32473 id=\"7\" chain=\"1\" seq=\"3\""));
        assert!(line.contains("object_id=\"a|b=c\\\\d\\n\\]\\\"e\""));
        assert!(line.ends_with("] x|y"));
        assert_eq!(rfc5424(&Event { action: "a b".into(), ..ev() }, "").split(' ').nth(2), Some("-"));
    }
}
