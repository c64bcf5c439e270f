//! Field names and their aliases, and how a `field:` name resolves to a column or a json path.

use super::{qerr, Doc, Field, QueryError, MAX_KEYS};

/// Field names and aliases; the first 16 are the column names, in `Field` order.
const FIELDS: [(&str, Field); 21] = [
    ("action", Field::Action),
    ("status", Field::Status),
    ("severity", Field::Severity),
    ("actor", Field::Actor),
    ("actor_ip", Field::ActorIp),
    ("module", Field::Module),
    ("object_type", Field::ObjectType),
    ("object_id", Field::ObjectId),
    ("object_name", Field::ObjectName),
    ("application", Field::Application),
    ("session_id", Field::SessionId),
    ("message", Field::Message),
    ("at", Field::At),
    ("id", Field::Id),
    ("chain", Field::Chain),
    ("seq", Field::Seq),
    ("event_type", Field::Action),
    ("timestamp", Field::At),
    ("user", Field::Actor),
    ("actor.email", Field::Actor),
    ("ip", Field::ActorIp),
];

pub(super) const FREE_TEXT: [Field; 8] = [
    Field::Action,
    Field::Actor,
    Field::ObjectType,
    Field::ObjectId,
    Field::ObjectName,
    Field::Message,
    Field::Module,
    Field::Application,
];

impl Field {
    /// Column name (fixed whitelist; the user's spelling never reaches SQL).
    pub(super) fn col(self) -> &'static str {
        FIELDS[self as usize].0
    }
}

impl Doc {
    pub(super) fn col(self) -> &'static str {
        match self {
            Doc::Metadata => "metadata",
            Doc::Old => "old",
            Doc::New => "new",
        }
    }
}

#[derive(Clone)]
pub(super) enum Target {
    Col(Field),
    Json(Doc, Vec<String>),
}

pub(super) fn resolve(name: &str, segs: Vec<(String, bool)>, pos: usize) -> Result<Target, QueryError> {
    let lname = name.to_ascii_lowercase();
    if let Some((_, f)) = FIELDS.iter().find(|(n, _)| *n == lname) {
        return Ok(Target::Col(*f));
    }
    let mut it = segs.into_iter();
    let doc = match it.next().map(|s| s.0.to_ascii_lowercase()).as_deref() {
        Some("metadata") => Some(Doc::Metadata),
        Some("old") => Some(Doc::Old),
        Some("new") => Some(Doc::New),
        _ => None,
    };
    let keys: Vec<(String, bool)> = it.collect();
    match doc {
        Some(_) if keys.iter().any(|(k, q)| k.is_empty() && !q) => {
            Err(qerr(pos, format!("empty key in path \"{name}\" (quote keys that contain dots)")))
        }
        Some(_) if keys.len() > MAX_KEYS => Err(qerr(pos, format!("path deeper than {MAX_KEYS} keys"))),
        Some(d) if !keys.is_empty() => Ok(Target::Json(d, keys.into_iter().map(|k| k.0).collect())),
        _ => {
            let list: Vec<&str> = FIELDS[..16].iter().map(|f| f.0).collect();
            Err(qerr(
                pos,
                format!("unknown field \"{name}\" (fields: {}, metadata.KEY, old.KEY, new.KEY)", list.join(", ")),
            ))
        }
    }
}
