//! The canonical table layout: `{tenant}/canonical/{table}/{service}/` holds, per record-id
//! bucket, a base file `b{bucket:04}-g{generation}.parquet` and any number of delta files
//! `b{bucket:04}-g{generation}-delta.parquet`, and `_manifest.json`, which names the current
//! base and deltas of each bucket (merge-on-read: a bucket's rows are its base's and deltas'
//! rows resolved by `resolve`, the highest generation winning per record id and effective
//! start). Bucket files are never overwritten: a transform writes the files of the buckets it
//! changes under the next generation and then replaces the manifest with one put (atomic on
//! every store), so a reader that goes through the manifest sees the previous version of the
//! table or the new one, never a mix, and a transform killed before its manifest leaves the
//! previous version whole.
//!
//! The manifest also lists the raw files the table was built from (path and size): the next
//! transform reads only the raw files not in it (`is_consumed`).
//!
//! Files no manifest names are garbage: after a manifest moves, the files neither it nor the
//! one it replaced names (older generations, and files a killed transform wrote) are removed.
//! The replaced version's files stay until the next transform, for readers still reading it.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::{Path, PathPart};
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

use super::TransformError;
use crate::domain::Service;

/// The manifest's file name in a table's folder.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// The manifest format this build writes: 2 names each bucket's base file and its deltas.
/// It also reads format 1 (a base file per bucket, rows without a generation column).
pub const MANIFEST_FORMAT: u32 = 2;

/// The oldest manifest format this build reads.
const OLDEST_FORMAT: u32 = 1;

/// How a record's bucket is found, as named in the manifest: XXH3-64 of the id's number
/// (8 bytes, little-endian) when the source's ids are whole numbers, else of its UTF-8 text,
/// modulo the bucket count.
pub const BUCKET_HASH: &str = "xxh3_64(le_i64(record_num) | utf8(record_id)) % buckets";

/// One bucket's current files: its base and the deltas written over it since.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketFile {
    pub bucket: usize,
    /// The base file's name in the table's folder.
    pub file: String,
    /// History rows (versions) of the bucket, its base and deltas resolved.
    pub rows: u64,
    /// Distinct records (current rows) of the bucket, resolved.
    pub records: u64,
    /// Bytes of the base file.
    pub bytes: u64,
    /// Delta files over the base, oldest first (none in format 1).
    #[serde(default)]
    pub deltas: Vec<DeltaFile>,
}

/// A delta file: the rows of a bucket one merge added or changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeltaFile {
    /// File name in the table's folder.
    pub file: String,
    /// Rows in the file (new versions and re-emitted ones).
    pub rows: u64,
    pub bytes: u64,
    /// The generation it was written in: its rows' `_generation`.
    pub generation: u64,
}

impl BucketFile {
    /// The base's generation (from its name; 0 for a name of no generation).
    pub fn generation(&self) -> u64 {
        generation_of(&self.file).unwrap_or(0)
    }

    /// Bytes of the base and its deltas.
    pub fn total_bytes(&self) -> u64 {
        self.bytes + self.deltas.iter().map(|d| d.bytes).sum::<u64>()
    }

    /// Rows in the delta files.
    pub fn delta_rows(&self) -> u64 {
        self.deltas.iter().map(|d| d.rows).sum()
    }

    /// The base's and the deltas' file names with their generations, base first.
    pub fn files(&self) -> impl Iterator<Item = (&str, u64)> {
        std::iter::once((self.file.as_str(), self.generation()))
            .chain(self.deltas.iter().map(|d| (d.file.as_str(), d.generation)))
    }
}

/// A raw file the table holds the versions of.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Consumed {
    pub path: String,
    pub size: u64,
}

/// `_manifest.json`: the current version of one canonical table of one service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// Counts up with every version written; part of the bucket files' names.
    pub generation: u64,
    /// Fixed when the table is built in full.
    pub buckets: usize,
    pub hash: String,
    /// A digest of the mapping the table was built under: another one rebuilds it in full.
    pub mapping: String,
    /// Rows of the table when it was last built in full (and its bucket count chosen).
    pub built_rows: u64,
    /// The buckets that hold records, by bucket number.
    pub files: Vec<BucketFile>,
    /// Sorted by path.
    pub consumed: Vec<Consumed>,
}

impl Manifest {
    /// Rows of the whole table.
    pub fn rows(&self) -> u64 {
        self.files.iter().map(|f| f.rows).sum()
    }

    pub fn records(&self) -> u64 {
        self.files.iter().map(|f| f.records).sum()
    }

    /// Bytes of the table's current files, bases and deltas.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(BucketFile::total_bytes).sum()
    }

    /// Reads a manifest's JSON; `origin` names it in the error.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Manifest, TransformError> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| TransformError::Data {
            origin: origin.to_string(),
            reason: format!("not a canonical table manifest: {e}"),
        })?;
        if !(OLDEST_FORMAT..=MANIFEST_FORMAT).contains(&m.format) {
            return Err(TransformError::Data {
                origin: origin.to_string(),
                reason: format!(
                    "manifest format {} (this build reads {OLDEST_FORMAT} to {MANIFEST_FORMAT})",
                    m.format
                ),
            });
        }
        Ok(m)
    }
}

/// Whether the table already holds the versions of raw file `object`: the manifest lists it
/// with the same size. A file rewritten since (a retried chunk's part, same name, other
/// size) is new input; merging versions again is harmless, they are deduplicated by
/// (id, start).
pub fn is_consumed(manifest: &Manifest, object: &ObjectMeta) -> bool {
    let path = object.location.as_ref();
    manifest
        .consumed
        .binary_search_by(|c| c.path.as_str().cmp(path))
        .is_ok_and(|i| manifest.consumed[i].size == object.size)
}

/// `{tenant_id}/canonical/{table}/{service}`: the table's folder.
pub fn table_dir(tenant_id: &str, table: &str, service: Service) -> Path {
    Path::from_iter([
        PathPart::from(tenant_id),
        PathPart::from("canonical"),
        PathPart::from(table),
        PathPart::from(service.as_str()),
    ])
}

/// `{table_dir}/_manifest.json`
pub fn manifest_path(tenant_id: &str, table: &str, service: Service) -> Path {
    table_dir(tenant_id, table, service).join(MANIFEST_FILE)
}

/// `{tenant_id}/canonical/{table}/{service}.parquet`: the single file of the layout before
/// buckets, replaced by a full build.
pub fn single_file_path(tenant_id: &str, table: &str, service: Service) -> Path {
    Path::from_iter([
        PathPart::from(tenant_id),
        PathPart::from("canonical"),
        PathPart::from(table),
        PathPart::from(format!("{}.parquet", service.as_str()).as_str()),
    ])
}

/// `b{bucket:04}-g{generation}-w{writer}.parquet`: a bucket's base file. `writer` is the
/// writing transform's own token (`writer_token`): two transforms that build the same
/// generation at once (two processes, one table) never write the same name, so whichever
/// manifest is put last names files holding exactly the rows it describes.
pub fn bucket_file_name(bucket: usize, generation: u64, writer: &str) -> String {
    format!("b{bucket:04}-g{generation}-w{writer}.parquet")
}

/// `b{bucket:04}-g{generation}-w{writer}-delta.parquet`: a bucket's delta file.
pub fn delta_file_name(bucket: usize, generation: u64, writer: &str) -> String {
    format!("b{bucket:04}-g{generation}-w{writer}-delta.parquet")
}

/// Hex digits of a writer token.
const WRITER_DIGITS: usize = 8;

/// A new transform's writer token: random, `WRITER_DIGITS` hex digits.
pub fn writer_token() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// The generation in a bucket file's name, base or delta (names written before writer
/// tokens, `b0007-g12.parquet`, too).
pub fn generation_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix('b')?.strip_suffix(".parquet")?;
    let rest = rest.strip_suffix("-delta").unwrap_or(rest);
    let (bucket, rest) = rest.split_once("-g")?;
    bucket.parse::<usize>().ok()?;
    let generation = match rest.split_once("-w") {
        Some((generation, writer)) => {
            let token = writer.len() == WRITER_DIGITS
                && writer
                    .bytes()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase());
            token.then_some(generation)?
        }
        None => rest,
    };
    generation.parse().ok()
}

/// The manifest at `path`, `None` when the table was never built in this layout.
pub async fn read_manifest_at(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<Option<Manifest>, TransformError> {
    let got = match store.get(path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(TransformError::Store(format!("get {path}: {e}"))),
    };
    let bytes = got
        .bytes()
        .await
        .map_err(|e| TransformError::Store(format!("read {path}: {e}")))?;
    Manifest::parse(&bytes, path.as_ref()).map(Some)
}

/// The current manifest of a table.
pub async fn read_manifest(
    store: &Arc<dyn ObjectStore>,
    tenant_id: &str,
    table: &str,
    service: Service,
) -> Result<Option<Manifest>, TransformError> {
    read_manifest_at(store, &manifest_path(tenant_id, table, service)).await
}

/// The files of the current version of a table, in bucket order, each bucket's base before
/// its deltas; empty when it was never built. Their rows are the table's only once resolved
/// (`resolve::read_current` reads them so).
pub async fn current_files(
    store: &Arc<dyn ObjectStore>,
    tenant_id: &str,
    table: &str,
    service: Service,
) -> Result<Vec<Path>, TransformError> {
    let dir = table_dir(tenant_id, table, service);
    Ok(read_manifest(store, tenant_id, table, service)
        .await?
        .map(|m| {
            m.files
                .iter()
                .flat_map(|f| f.files().map(|(name, _)| dir.clone().join(name)))
                .collect()
        })
        .unwrap_or_default())
}

/// Puts the manifest: one put, which replaces the object whole.
pub async fn write_manifest(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    manifest: &Manifest,
) -> Result<(), TransformError> {
    let path = dir.clone().join(MANIFEST_FILE);
    let json = serde_json::to_vec_pretty(manifest).map_err(|e| TransformError::Data {
        origin: path.to_string(),
        reason: e.to_string(),
    })?;
    store
        .put(&path, PutPayload::from(json))
        .await
        .map(|_| ())
        .map_err(|e| TransformError::Store(format!("put {path}: {e}")))
}

/// Removes the bucket files (bases and deltas) of `dir` that neither `current` nor `previous`
/// names and that are older than `current`'s generation (a newer one may be another
/// transform's, still being written). Returns how many were removed.
pub async fn remove_garbage(
    store: &Arc<dyn ObjectStore>,
    dir: &Path,
    current: &Manifest,
    previous: Option<&Manifest>,
) -> Result<usize, TransformError> {
    let named: BTreeSet<&str> = current
        .files
        .iter()
        .chain(previous.iter().flat_map(|m| m.files.iter()))
        .flat_map(|f| f.files().map(|(name, _)| name))
        .collect();
    let listed: Vec<ObjectMeta> = store
        .list(Some(dir))
        .try_collect()
        .await
        .map_err(|e| TransformError::Store(format!("list {dir}: {e}")))?;
    let mut removed = 0;
    for object in listed {
        let Some(name) = object.location.filename() else {
            continue;
        };
        let old = generation_of(name).is_some_and(|g| g < current.generation);
        if !old || named.contains(name) {
            continue;
        }
        match store.delete(&object.location).await {
            Ok(()) => removed += 1,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => {
                return Err(TransformError::Store(format!(
                    "delete {}: {e}",
                    object.location
                )));
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer token.
    const W: &str = "0123abcd";

    #[test]
    fn bucket_file_names_carry_their_generation() {
        assert_eq!(bucket_file_name(7, 12, W), "b0007-g12-w0123abcd.parquet");
        assert_eq!(generation_of(&bucket_file_name(7, 12, W)), Some(12));
        assert_eq!(
            delta_file_name(7, 15, W),
            "b0007-g15-w0123abcd-delta.parquet"
        );
        assert_eq!(generation_of(&delta_file_name(7, 15, W)), Some(15));
        let token = writer_token();
        assert_eq!(generation_of(&delta_file_name(7, 15, &token)), Some(15));
        // Names written before writer tokens.
        assert_eq!(generation_of("b0007-g12.parquet"), Some(12));
        assert_eq!(generation_of("b0007-g15-delta.parquet"), Some(15));
        assert_eq!(generation_of("b0007-g15-other.parquet"), None);
        assert_eq!(generation_of("b0007-g15-wXYZ.parquet"), None);
        assert_eq!(generation_of("b0007-g15-w0123ABCD.parquet"), None);
        assert_eq!(generation_of(MANIFEST_FILE), None);
        assert_eq!(generation_of("bxx-g1.parquet"), None);
        assert_eq!(
            table_dir("acme", "tickets", Service::Connectwise).as_ref(),
            "acme/canonical/tickets/connectwise"
        );
    }

    #[test]
    fn a_raw_file_is_consumed_only_at_the_size_it_was_read() {
        let m = Manifest {
            format: MANIFEST_FORMAT,
            generation: 1,
            buckets: 1,
            hash: BUCKET_HASH.into(),
            mapping: String::new(),
            built_rows: 0,
            files: Vec::new(),
            consumed: vec![
                Consumed {
                    path: "a/1.parquet".into(),
                    size: 10,
                },
                Consumed {
                    path: "a/2.parquet".into(),
                    size: 20,
                },
            ],
        };
        let meta = |p: &str, size: u64| ObjectMeta {
            location: Path::from(p),
            last_modified: chrono::Utc::now(),
            size,
            e_tag: None,
            version: None,
        };
        assert!(is_consumed(&m, &meta("a/2.parquet", 20)));
        assert!(!is_consumed(&m, &meta("a/2.parquet", 21)), "rewritten");
        assert!(!is_consumed(&m, &meta("a/3.parquet", 20)), "new");
        let bad = Manifest::parse(br#"{"format": 9}"#, "x/_manifest.json").unwrap_err();
        assert!(bad.to_string().contains("x/_manifest.json"), "{bad}");
    }

    #[test]
    fn a_format_1_manifest_reads_as_bases_without_deltas() {
        let json = br#"{"format": 1, "generation": 4, "buckets": 2, "hash": "h", "mapping": "m",
            "built_rows": 5, "consumed": [],
            "files": [{"bucket": 0, "file": "b0000-g3.parquet", "rows": 3, "records": 2, "bytes": 100},
                      {"bucket": 1, "file": "b0001-g4.parquet", "rows": 2, "records": 1, "bytes": 50}]}"#;
        let mut m = Manifest::parse(json, "m").unwrap();
        assert!(m.files.iter().all(|f| f.deltas.is_empty()));
        assert_eq!((m.rows(), m.records(), m.bytes()), (5, 3, 150));
        assert_eq!(
            m.files[0].files().collect::<Vec<_>>(),
            vec![("b0000-g3.parquet", 3)]
        );
        m.files[0].deltas.push(DeltaFile {
            file: delta_file_name(0, 5, W),
            rows: 2,
            bytes: 30,
            generation: 5,
        });
        assert_eq!(m.bytes(), 180, "bases and deltas");
        assert_eq!(
            m.files[0].files().collect::<Vec<_>>(),
            vec![
                ("b0000-g3.parquet", 3),
                ("b0000-g5-w0123abcd-delta.parquet", 5)
            ]
        );
    }

    /// Garbage removal keeps the bases and deltas the current or the previous manifest names
    /// and removes older files neither names, deltas too.
    #[tokio::test]
    async fn garbage_removal_keeps_the_deltas_either_version_names() {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let dir = table_dir("acme", "tickets", Service::Connectwise);
        let delta = |bucket: usize, generation: u64| DeltaFile {
            file: delta_file_name(bucket, generation, W),
            rows: 1,
            bytes: 1,
            generation,
        };
        let bucket = |file: String, deltas: Vec<DeltaFile>| BucketFile {
            bucket: 0,
            file,
            rows: 1,
            records: 1,
            bytes: 1,
            deltas,
        };
        let version = |generation: u64, files: Vec<BucketFile>| Manifest {
            format: MANIFEST_FORMAT,
            generation,
            buckets: 2,
            hash: BUCKET_HASH.into(),
            mapping: String::new(),
            built_rows: 0,
            files,
            consumed: Vec::new(),
        };
        let previous = version(
            4,
            vec![bucket(
                bucket_file_name(0, 1, W),
                vec![delta(0, 2), delta(0, 4)],
            )],
        );
        let current = version(5, vec![bucket(bucket_file_name(0, 5, W), Vec::new())]);
        let all = [
            bucket_file_name(0, 1, W),
            delta_file_name(0, 2, W),
            delta_file_name(0, 3, W), // a killed transform's
            delta_file_name(0, 4, W),
            bucket_file_name(0, 5, W),
            delta_file_name(1, 2, W), // named by a version before the previous one
            delta_file_name(1, 6, W), // a newer transform's, still writing
        ];
        for name in &all {
            store
                .put(
                    &dir.clone().join(name.as_str()),
                    PutPayload::from_static(b"x"),
                )
                .await
                .unwrap();
        }
        let removed = remove_garbage(&store, &dir, &current, Some(&previous))
            .await
            .unwrap();
        assert_eq!(removed, 2);
        let left: BTreeSet<String> = store
            .list(Some(&dir))
            .map_ok(|o| o.location.filename().unwrap().to_string())
            .try_collect()
            .await
            .unwrap();
        let expected: BTreeSet<String> = [&all[0], &all[1], &all[3], &all[4], &all[6]]
            .into_iter()
            .cloned()
            .collect();
        assert_eq!(left, expected);
    }
}
