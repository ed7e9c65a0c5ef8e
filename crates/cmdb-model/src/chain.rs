//! Tamper evidence for the history: each asset's change records form a hash chain, and a digest
//! of every chain's head as of an instant is what an auditor keeps outside the database.
//!
//! A record's hash is SHA-256 over its canonical content and the previous record's hash in the
//! same asset's chain, so editing, deleting or inserting a record changes the hash of every later
//! record of that asset, and with it the head. Chains are per asset so that reports of different
//! assets are still written in parallel.
//!
//! The canonical content is a JSON array (serde_json writes it byte for byte the same everywhere):
//! `["cmdb-change-v1", id, asset_id, recorded_at, collected_at, report_id, source, section,
//! component, path, action, old_value, new_value, previous_hash]`, where the values are exactly
//! the stored columns (old and new values as their stored canonical JSON text; absent ones null).
//! The human sentence (`summary`) and the feed position (`txid`) are derived, not evidence.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// The stored columns of one change record that its hash covers.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ChainedRecord<'a> {
    /// Record id.
    pub id: i64,
    /// The asset whose chain it is in.
    pub asset_id: i64,
    /// Server time of the write (Unix µs).
    pub recorded_at: i64,
    /// When the data was collected (Unix µs), for reports.
    pub collected_at: Option<i64>,
    /// The report that caused it.
    pub report_id: Option<&'a str>,
    /// agent, ssh, salt, legacy or user:<name>.
    pub source: &'a str,
    /// Section.
    pub section: &'a str,
    /// Component key.
    pub component: Option<&'a str>,
    /// Field path.
    pub path: &'a str,
    /// added, removed or changed.
    pub action: &'a str,
    /// The old value as stored (canonical JSON text).
    pub old_value: Option<&'a str>,
    /// The new value as stored (canonical JSON text).
    pub new_value: Option<&'a str>,
}

/// Versions the canonical form, so that a later form can never collide with this one.
const RECORD_FORM: &str = "cmdb-change-v1";

/// The hash of `record` chained after `previous` (the hash of the asset's record before it;
/// `None` for an asset's first record), as 64 lowercase hex digits.
pub fn record_hash(record: &ChainedRecord<'_>, previous: Option<&str>) -> String {
    let r = record;
    let canonical = (
        RECORD_FORM,
        r.id,
        r.asset_id,
        r.recorded_at,
        r.collected_at,
        r.report_id,
        r.source,
        r.section,
        r.component,
        r.path,
        r.action,
        r.old_value,
        r.new_value,
        previous,
    );
    // Serializing a tuple of integers, strings and options cannot fail.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_default();
    hex::encode(Sha256::digest(&bytes))
}

/// The digest of chain heads `(asset_id, head hash)`, given in ascending asset order: a Merkle
/// root (SHA-256; a leaf is `0x00 || "<asset_id>:<head>"`, an inner node `0x01 || left || right`,
/// an odd node is carried up unchanged), as 64 lowercase hex digits. With no chains it is the
/// SHA-256 of nothing. A root rather than one hash over everything so that a single asset's head
/// can later be proven with a path of log2(n) hashes.
pub fn heads_digest<'a>(heads: impl IntoIterator<Item = (i64, &'a str)>) -> String {
    let mut level: Vec<[u8; 32]> = heads
        .into_iter()
        .map(|(asset_id, head)| {
            let mut leaf = Sha256::new();
            leaf.update([0u8]);
            leaf.update(format!("{asset_id}:{head}").as_bytes());
            leaf.finalize().into()
        })
        .collect();
    if level.is_empty() {
        return hex::encode(Sha256::digest([]));
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => {
                    let mut node = Sha256::new();
                    node.update([1u8]);
                    node.update(left);
                    node.update(right);
                    node.finalize().into()
                }
                // chunks(2) yields one or two: the odd one out is carried up.
                _ => pair[0],
            })
            .collect();
    }
    hex::encode(level[0])
}

/// Whether `text` has the form of a digest or record hash (64 lowercase hex digits).
pub fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: i64, new_value: Option<&str>) -> ChainedRecord<'_> {
        ChainedRecord {
            id,
            asset_id: 7,
            recorded_at: 1_700_000_000_000_000,
            collected_at: Some(1_699_999_999_000_000),
            report_id: Some("6f1c0f7e-0000-4000-8000-000000000001"),
            source: "agent",
            section: "cpu",
            component: None,
            path: "model",
            action: "changed",
            old_value: Some("\"Xeon\""),
            new_value,
        }
    }

    #[test]
    fn a_hash_covers_every_column_and_the_previous_hash() {
        let base = record(1, Some("\"EPYC\""));
        let h = record_hash(&base, None);
        assert!(is_hash(&h), "{h}");
        assert_eq!(h, record_hash(&base, None), "deterministic");
        let variants = [
            ChainedRecord { id: 2, ..base },
            ChainedRecord { asset_id: 8, ..base },
            ChainedRecord { recorded_at: base.recorded_at + 1, ..base },
            ChainedRecord { collected_at: None, ..base },
            ChainedRecord { report_id: None, ..base },
            ChainedRecord { source: "ssh", ..base },
            ChainedRecord { section: "memory", ..base },
            ChainedRecord { component: Some("cpu0"), ..base },
            ChainedRecord { path: "cores", ..base },
            ChainedRecord { action: "added", ..base },
            ChainedRecord { old_value: None, ..base },
            ChainedRecord { new_value: Some("\"EPYC \""), ..base },
        ];
        for variant in variants {
            assert_ne!(record_hash(&variant, None), h, "{variant:?}");
        }
        assert_ne!(record_hash(&base, Some(&h)), h);
        // A value moved between columns is a different record, not the same bytes.
        let shifted = ChainedRecord { path: "", component: Some("model"), ..base };
        assert_ne!(record_hash(&shifted, None), h);
    }

    #[test]
    fn the_digest_changes_with_any_head_and_with_order() {
        let a = "a".repeat(64);
        let b = "b".repeat(64);
        let c = "c".repeat(64);
        let root = heads_digest([(1, a.as_str()), (2, b.as_str()), (3, c.as_str())]);
        assert!(is_hash(&root));
        assert_eq!(root, heads_digest([(1, a.as_str()), (2, b.as_str()), (3, c.as_str())]));
        assert_ne!(root, heads_digest([(1, a.as_str()), (2, c.as_str()), (3, b.as_str())]));
        assert_ne!(root, heads_digest([(1, a.as_str()), (2, b.as_str())]));
        assert_ne!(root, heads_digest([(1, a.as_str()), (2, b.as_str()), (4, c.as_str())]));
        // One leaf is its own root; no leaves is the hash of nothing.
        assert_ne!(heads_digest([(1, a.as_str())]), heads_digest(std::iter::empty()));
        assert_eq!(heads_digest(std::iter::empty()), hex::encode(Sha256::digest([])));
    }
}
