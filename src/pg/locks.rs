//! audit_ext's own heavyweight locks, the one owner of their keys.
//!
//! Advisory lock tags that no SQL function can produce, so that no role (PUBLIC included) can
//! take one and make writers wait: `pg_advisory_*` always set the tag's fourth field to 1 (one
//! bigint key) or 2 (two integer keys). Visible in `pg_locks` as locktype advisory, classid
//! 1096107092 ('AUDT'), and:
//! - objsubid 3, objid = chain: the lock of one hash chain (src/chain.rs);
//! - objsubid 3, objid 4294967295: maintenance, one retention or partition function at a time
//!   (src/maintenance.rs);
//! - objsubid 4, objid = a hash of rule and group: one alert firing (src/alerts.rs).
//!
//! All are transaction-level locks in exclusive mode.

use pgrx::pg_sys;

/// Field 2 of every tag: 'AUDT'.
pub const LOCK_KEY: i32 = 0x4155_4454;
const CHAIN_FIELD4: u16 = 3;
const ALERT_FIELD4: u16 = 4;
/// objid of the maintenance lock (beside the chains, whose numbers stay below 2^31).
const MAINTENANCE_OBJID: u32 = u32::MAX;

/// # Safety
/// In a backend attached to a database (MyDatabaseId set).
unsafe fn tag(objid: u32, field4: u16) -> pg_sys::LOCKTAG {
    let mut tag: pg_sys::LOCKTAG = std::mem::zeroed();
    tag.locktag_field1 = pg_sys::MyDatabaseId.to_u32();
    tag.locktag_field2 = LOCK_KEY as u32;
    tag.locktag_field3 = objid;
    tag.locktag_field4 = field4;
    tag.locktag_type = pg_sys::LockTagType::LOCKTAG_ADVISORY as u8;
    tag.locktag_lockmethodid = 2; // USER_LOCKMETHOD
    tag
}

/// Takes the lock; when `wait`, waits as any lock does (lock_timeout, statement_timeout and
/// deadlock detection apply). False when not waiting and another transaction holds it.
///
/// # Safety
/// Inside a transaction of a backend attached to a database.
unsafe fn acquire(objid: u32, field4: u16, wait: bool) -> bool {
    let tag = tag(objid, field4);
    pg_sys::LockAcquire(&tag, pg_sys::ExclusiveLock as pg_sys::LOCKMODE, false, !wait)
        != pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL
}

/// The lock of hash chain `chain` (see [`acquire`] for `wait`).
pub fn chain(chain: i32, wait: bool) -> bool {
    // SAFETY: only called from the chain_event trigger, inside a transaction.
    unsafe { acquire(chain as u32, CHAIN_FIELD4, wait) }
}

/// The maintenance lock (see [`acquire`] for `wait`).
pub fn maintenance(wait: bool) -> bool {
    // SAFETY: only called from SQL functions, inside a transaction.
    unsafe { acquire(MAINTENANCE_OBJID, CHAIN_FIELD4, wait) }
}

/// The lock of one alert rule and group (`objid`: a hash of both), never waiting: false when
/// another open transaction holds it, i.e. is firing the rule for the group.
pub fn alert(objid: u32) -> bool {
    // SAFETY: only called from the alert trigger, inside a transaction.
    unsafe { acquire(objid, ALERT_FIELD4, false) }
}
