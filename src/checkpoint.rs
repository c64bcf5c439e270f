//! Signed checkpoints (sql/checkpoint.sql, README "Signed checkpoints"): the heads of every
//! chain, signed with an Ed25519 key the extension keeps, so that an auditor who keeps a
//! checkpoint outside the database later proves that the log still extends it. A hash chain
//! alone cannot show that a superuser did not rewrite a chain and hash it again; the rewrite
//! cannot reproduce the hashes a checkpoint holds, and no one without the key can make a
//! checkpoint that verifies.
//!
//! The payload is the exact signed text (UTF-8 JSON, fields in this order):
//! `{"format":"audit_ext checkpoint v1","database":{"system_identifier":"...","name":"..."},
//! "at":"...Z","chains":[{"chain":1,"seq":10,"hash":"<hex>","events":10},...]}`; the
//! signature is Ed25519 (RFC 8032) over those bytes. docs/hash-format.md "Checkpoints".

use crate::error::raise;
use audit_core::hash::{from_hex, to_hex};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use pgrx::prelude::*;
use pgrx::JsonB;
use serde::{Deserialize, Serialize};

pub const FORMAT: &str = "audit_ext checkpoint v1";

#[derive(Serialize, Deserialize, Debug)]
pub struct Payload {
    pub format: String,
    pub database: Database,
    pub at: String,
    pub chains: Vec<Head>,
}

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
pub struct Database {
    pub system_identifier: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct Head {
    pub chain: i32,
    pub seq: i64,
    pub hash: String,
    pub events: i64,
}

/// What `audit.checkpoint()` returns and `audit.verify(checkpoint => ...)` takes.
#[derive(Serialize, Deserialize, Debug)]
pub struct Checkpoint {
    pub payload: String,
    pub signature: String,
    pub public_key: String,
}

#[derive(thiserror::Error, Debug)]
pub enum CheckpointError {
    #[error("audit_ext has no signing key in this database")]
    NoKey,
    #[error("invalid checkpoint: {0}")]
    Malformed(String),
}

/// The SQLSTATE and hint of each error (the table in the README, "Errors").
impl crate::error::SqlError for CheckpointError {
    fn code(&self) -> pgrx::PgSqlErrorCode {
        match self {
            CheckpointError::NoKey => pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            CheckpointError::Malformed(_) => pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
        }
    }
    fn hint(&self) -> Option<String> {
        Some(match self {
            CheckpointError::NoKey => "Create one with audit.rotate_signing_key() (as audit_admin).".into(),
            CheckpointError::Malformed(_) => {
                "Pass the JSON object audit.checkpoint() returned: {\"payload\": ..., \"signature\": ..., \"public_key\": ...}.".into()
            }
        })
    }
}

/// This database's identity in a payload: the cluster's system identifier (as in
/// `pg_control_system()`, which needs no privilege read this way) and the database's name.
fn database() -> Database {
    Database {
        system_identifier: crate::pg::backend::system_identifier().to_string(),
        name: crate::pg::backend::database_name(),
    }
}

/// A new key from the server's strong random source (`pg_strong_random`).
fn new_key() -> SigningKey {
    let mut secret = [0u8; 32];
    if !crate::pg::backend::strong_random(&mut secret) {
        pgrx::error!("audit_ext: the server's strong random source failed");
    }
    SigningKey::from_bytes(&secret)
}

/// `audit_internal._new_signing_key()`: retires the current key (if any, erasing its secret half) and
/// stores a new one; returns
/// the new public key (hex). Called at CREATE EXTENSION and by `audit.rotate_signing_key()`.
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_new_signing_key")]
#[search_path(pg_catalog, pg_temp)]
fn new_signing_key() -> String {
    let key = new_key();
    let public = key.verifying_key().to_bytes().to_vec();
    let secret = key.to_bytes().to_vec();
    // a retired key signs nothing more: its secret half is erased (its public half stays, so
    // that the checkpoints it signed keep verifying)
    Spi::run(
        "UPDATE audit.signing_keys SET retired_at = pg_catalog.now(), secret_key = '\\x'::bytea \
         WHERE retired_at IS NULL",
    )
    .and_then(|_| {
        Spi::run_with_args(
            "INSERT INTO audit.signing_keys (public_key, secret_key) VALUES ($1, $2)",
            &[public.as_slice().into(), secret.as_slice().into()],
        )
    })
    .unwrap_or_else(|e| pgrx::error!("audit_ext: storing the signing key failed: {e}"));
    to_hex(&public)
}

/// The current key, and its id.
fn current_key() -> (i64, SigningKey) {
    let row = Spi::connect(|client| {
        client
            .select(
                "SELECT id, secret_key FROM audit.signing_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1",
                Some(1),
                &[],
            )
            .ok()?
            .first()
            .get_two::<i64, Vec<u8>>()
            .ok()
    });
    match row {
        Some((Some(id), Some(secret))) => {
            let bytes: [u8; 32] = secret.try_into().unwrap_or_else(|_| raise(CheckpointError::NoKey));
            (id, SigningKey::from_bytes(&bytes))
        }
        _ => raise(CheckpointError::NoKey),
    }
}

/// `audit_internal._checkpoint()`: the signed heads of every chain now (audit.checkpoint() records it).
#[pg_extern(volatile, parallel_unsafe, schema = "audit_internal", name = "_checkpoint")]
#[search_path(pg_catalog, pg_temp)]
fn make_checkpoint() -> JsonB {
    let (_, key) = current_key();
    let chains: Vec<Head> = Spi::connect(|client| {
        client
            .select(
                "SELECT h.chain, h.seq, pg_catalog.encode(h.hash, 'hex'), \
                        (SELECT pg_catalog.count(*) FROM audit.events e WHERE e.chain OPERATOR(pg_catalog.=) h.chain) \
                 FROM audit.head() h ORDER BY h.chain",
                None,
                &[],
            )
            .map(|rows| {
                rows.filter_map(|r| {
                    Some(Head {
                        chain: r.get::<i32>(1).ok()??,
                        seq: r.get::<i64>(2).ok()??,
                        hash: r.get::<String>(3).ok()??,
                        events: r.get::<i64>(4).ok()??,
                    })
                })
                .collect()
            })
            .unwrap_or_default()
    });
    let at = crate::event::iso_utc(crate::pg::backend::transaction_start() + audit_core::hash::PG_EPOCH_OFFSET_US);
    let payload = Payload { format: FORMAT.into(), database: database(), at, chains };
    let text = serde_json::to_string(&payload).unwrap_or_else(|e| pgrx::error!("audit_ext: {e}"));
    let signature = key.sign(text.as_bytes());
    let cp = Checkpoint {
        payload: text,
        signature: to_hex(&signature.to_bytes()),
        public_key: to_hex(&key.verifying_key().to_bytes()),
    };
    JsonB(serde_json::to_value(cp).unwrap_or_else(|e| pgrx::error!("audit_ext: {e}")))
}

/// `audit.signing_key()`: the current public key (hex), to note outside the database.
#[pg_extern(stable, parallel_safe, name = "signing_key")]
#[search_path(pg_catalog, pg_temp)]
fn signing_key() -> Option<String> {
    Spi::get_one::<String>(
        "SELECT pg_catalog.encode(public_key, 'hex') FROM audit.signing_keys WHERE retired_at IS NULL ORDER BY id DESC LIMIT 1",
    )
    .ok()
    .flatten()
}

/// What a checkpoint says, once its signature checks: the noted heads it holds (for
/// `audit.verify`), and a line for verify's checkpoint row. `Err` is why it cannot be relied on.
pub fn check(cp: serde_json::Value) -> Result<(serde_json::Value, String), String> {
    let cp: Checkpoint =
        serde_json::from_value(cp).unwrap_or_else(|e| raise(CheckpointError::Malformed(e.to_string())));
    let key_bytes: [u8; 32] = from_hex(&cp.public_key)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| raise(CheckpointError::Malformed("public_key is not 32 bytes of hex".into())));
    let sig_bytes: [u8; 64] = from_hex(&cp.signature)
        .and_then(|b| b.try_into().ok())
        .unwrap_or_else(|| raise(CheckpointError::Malformed("signature is not 64 bytes of hex".into())));
    let key = VerifyingKey::from_bytes(&key_bytes).map_err(|_| "its public_key is not an Ed25519 key".to_string())?;
    key.verify(cp.payload.as_bytes(), &Signature::from_bytes(&sig_bytes))
        .map_err(|_| "its signature does not match its payload (the payload or signature was changed)".to_string())?;
    let payload: Payload =
        serde_json::from_str(&cp.payload).map_err(|e| format!("its payload is not a checkpoint payload: {e}"))?;
    if payload.format != FORMAT {
        return Err(format!("its payload format is {:?}, not {FORMAT:?}", payload.format));
    }
    let here = database();
    if payload.database != here {
        return Err(format!(
            "it is of database {} (system {}), not of this one ({}, system {})",
            payload.database.name, payload.database.system_identifier, here.name, here.system_identifier
        ));
    }
    let known = Spi::get_one_with_args::<String>(
        "SELECT CASE WHEN k.retired_at IS NULL THEN 'the current key' \
                     ELSE 'a key retired at ' || pg_catalog.to_char(k.retired_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC' END \
         FROM audit.signing_keys k WHERE k.public_key OPERATOR(pg_catalog.=) $1",
        &[key_bytes.as_slice().into()],
    )
    .ok()
    .flatten()
    .ok_or_else(|| {
        format!("it is signed by key {}, which is not one of this log's keys (compare it with the key you noted)", cp.public_key)
    })?;
    let heads = serde_json::Value::Array(
        payload.chains.iter().map(|h| serde_json::json!({"chain": h.chain, "seq": h.seq, "hash": h.hash})).collect(),
    );
    let note = format!(
        "checkpoint of {}: signature valid ({}, {}...), {} chain(s) checked against it",
        payload.at,
        known,
        &cp.public_key[..16],
        payload.chains.len()
    );
    Ok((heads, note))
}
