//! Per-app inventory: which objects ferry applied for an app, kept in the cluster in
//! ConfigMaps of the `ferry-system` namespace, with Flux's `<ns>_<name>_<group>_<kind>`
//! identity plus the version to read each object back.
//!
//! # Format 3 (written)
//!
//! The inventory's payload is one JSON document `{"entries": [...], "inSync": {...}}`,
//! gzip-compressed and cut into parts of at most [`SHARD_BYTES`] bytes. The *head*
//! ConfigMap `ferry-inventory-<app>` holds `format: "3"`, `revision`, `generation`,
//! `objects` (the entry count, for people) and `shards`, the number of parts:
//!
//! - `shards: "0"`: the one part is in the head itself (`binaryData` key
//!   `inventory.json.gz`), so small apps keep a single ConfigMap;
//! - `shards: "n"`: part `i` (0 ≤ i < n) is in the *shard* ConfigMap
//!   `ferry-inventory.<app>.<generation>.<i>` (binaryData key `part`), whose `data`
//!   repeats `app`, `generation` and `index`, labelled `ferry.dev/inventory: <app>`.
//!   The dot keeps shard names apart from every head name (`ferry-inventory-…`), and
//!   the two trailing numbers keep the shards of different apps apart.
//!
//! A write of generation `g + 1` (one more than the head's, or the next whose shard
//! names are free: shards are created, never overwritten) writes its shards first
//! under new names, then the head (one atomic object write: the switch), then deletes
//! every labelled shard the head does not list. So at any point of a crash the head
//! names one complete generation: the old one until the switch, the new one after it;
//! shards of an unfinished write, or of a generation the head left, are garbage that
//! no reader looks at and the next write (or [`Cluster::delete_inventory`]) deletes. A
//! reader reads the head, then its shards, and takes a shard only when its `app`,
//! `generation` and `index` match the head's; a mismatch (a writer switched the head
//! in between) rereads from the head. The gzip trailer (CRC-32 and length) checks the
//! reassembled parts.
//!
//! Writes are conditional ([`Cluster::update_inventory`]): the head is created only when
//! there is none and replaced only at the resourceVersion it was read at; a writer that
//! comes second reads again and redoes its update, so two writers never lose each
//! other's entries. A writer that read the inventory already (a sync's plan) writes over
//! that read ([`Cluster::update_inventory_from`]) without reading it again.
//!
//! The `inSync` memo is a cache: when the payload would need more than [`MAX_SHARDS`]
//! parts, the memo is dropped (a warning is logged); only entries alone that do not fit
//! are an error.
//!
//! # Older formats (read)
//!
//! Format 2 (`format: "2"`) and format 1 (no `format` key) keep everything in the head's
//! `data`: `revision`, `entries` (JSON) and, in format 2, `inSync` (JSON). Their entries
//! are read; only a format-2 memo is. The next write replaces them with format 3.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use ferry_model::{APP_LABEL, APP_NAMESPACE_LABEL, AppKey, Known, ObjectRef, SYSTEM_NAMESPACE};
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use futures::{StreamExt, TryStreamExt, stream};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use serde::{Deserialize, Serialize};

use crate::{Cluster, KubeError};

/// The objects an app owns, as last recorded.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    /// Git revision of the last successful apply.
    pub revision: String,
    /// Owned objects.
    pub entries: Vec<ObjectRef>,
    /// What the last sync knew to be in sync, by object key, so that the next plan can
    /// skip those objects' dry-runs. A cache: missing or unreadable, it is empty.
    pub in_sync: BTreeMap<String, Known>,
}

/// The format written, kept under `format` in the head (none: 1).
const FORMAT: u32 = 3;
/// The format whose `inSync` memo is read from the head's `data`.
const FORMAT_2: u32 = 2;
/// Most compressed bytes in one ConfigMap (the API server allows 1 MiB of data, and
/// etcd 1.5 MiB per request, base64 and metadata included).
pub const SHARD_BYTES: usize = 768 * 1024;
/// Most shards of one inventory.
pub const MAX_SHARDS: usize = 16;
/// Label on shards, naming their app (the head carries the app label instead).
const SHARD_LABEL: &str = "ferry.dev/inventory";
/// The head's binaryData key of an inline payload.
const INLINE_KEY: &str = "inventory.json.gz";
/// A shard's binaryData key.
const PART_KEY: &str = "part";
/// How often a reader rereads the head when a writer switched it meanwhile.
const READ_ATTEMPTS: usize = 3;
/// How many shards are read or written at once.
const SHARD_CONCURRENCY: usize = 4;
/// How often a conditional inventory write is tried when other writers come first.
pub const CONFLICT_ATTEMPTS: usize = 5;
/// How many generations a sharded write tries when shard names are taken.
const GENERATION_ATTEMPTS: u64 = 8;

/// Where a head was read: its resourceVersion (the condition of the next write), its
/// generation, and whether it pointed to shards.
#[derive(Clone, Debug)]
struct Version {
    resource_version: String,
    generation: u64,
    sharded: bool,
}

/// An app's inventory as read (or last written) with the version of its head: the
/// condition of a conditional write over it ([`Cluster::update_inventory_from`]), so
/// that a sync that read the inventory to plan writes it without reading it again.
#[derive(Clone, Debug, Default)]
pub struct VersionedInventory {
    /// The inventory; `None` when the app has none.
    pub inventory: Option<Inventory>,
    /// The version of the head it was read from (`None`: no head of this format).
    version: Option<Version>,
    /// Whether `inventory` is the one an earlier version kept under the app's name alone
    /// (deleted by the first write).
    legacy: bool,
    /// Whether this is what a write returned (not a read).
    written: bool,
}

/// Where one inventory is kept: the head's name, how its shards are named, found and
/// told apart.
#[derive(Clone, Debug)]
struct Names {
    /// The `app` its head and shards record: `namespace/name` (the name alone in the
    /// inventories of earlier versions).
    id: String,
    /// The head ConfigMap's name.
    head: String,
    /// Shard names are `<stem>.<generation>.<index>`.
    stem: String,
    /// The label selector of its shards.
    shards: String,
}

impl Names {
    /// The inventory of `app`: head `ferry-inventory-<namespace>.<name>`, shards
    /// `ferry-inventory.<namespace>.<name>.<generation>.<index>` labelled with the name
    /// and the namespace. A namespace has no dot, so the names are unique per app.
    fn of(app: &AppKey) -> Self {
        Self {
            id: app.to_string(),
            head: format!("ferry-inventory-{}", app.dotted()),
            stem: format!("ferry-inventory.{}", app.dotted()),
            shards: format!(
                "{SHARD_LABEL}={},{APP_NAMESPACE_LABEL}={}",
                app.name, app.namespace
            ),
        }
    }

    /// The inventory an earlier version kept for an app named `name` (in any namespace):
    /// head `ferry-inventory-<name>`, shards labelled with the name alone.
    fn legacy(name: &str) -> Self {
        Self {
            id: name.to_string(),
            head: format!("ferry-inventory-{name}"),
            stem: format!("ferry-inventory.{name}"),
            shards: format!("{SHARD_LABEL}={name},!{APP_NAMESPACE_LABEL}"),
        }
    }

    fn shard(&self, generation: u64, index: usize) -> String {
        format!("{}.{generation}.{index}", self.stem)
    }
}

/// Whether ConfigMap `namespace/name` is one of ferry's inventory ConfigMaps (a head, an
/// earlier version's head or a shard), which carry an app's labels but are not its
/// objects.
pub(crate) fn is_inventory(namespace: Option<&str>, name: &str) -> bool {
    namespace == Some(SYSTEM_NAMESPACE)
        && (name.starts_with("ferry-inventory-") || name.starts_with("ferry-inventory."))
}

fn config_map_ref(name: &str) -> ObjectRef {
    ObjectRef::new("v1", "ConfigMap", Some(SYSTEM_NAMESPACE), name)
}

/// Where to cut a payload: the part size and how many parts an inventory may have.
#[derive(Clone, Copy, Debug)]
struct Layout {
    part_bytes: usize,
    max_parts: usize,
}

const LAYOUT: Layout = Layout {
    part_bytes: SHARD_BYTES,
    max_parts: MAX_SHARDS,
};

/// The JSON document that is compressed.
#[derive(Serialize)]
struct Payload<'a> {
    entries: &'a [ObjectRef],
    #[serde(rename = "inSync", skip_serializing_if = "Option::is_none")]
    in_sync: Option<&'a BTreeMap<String, Known>>,
}

/// An inventory as stored: its compressed payload in parts, and whether the memo was
/// dropped to make it fit.
#[derive(Debug)]
struct Encoded {
    objects: usize,
    parts: Vec<Vec<u8>>,
    memo_dropped: bool,
}

/// Compresses `entries` (and `in_sync`, if given) and cuts the result into parts.
fn compress(
    entries: &[ObjectRef],
    in_sync: Option<&BTreeMap<String, Known>>,
    layout: Layout,
) -> Result<Vec<Vec<u8>>, KubeError> {
    let json =
        serde_json::to_vec(&Payload { entries, in_sync }).map_err(|e| KubeError::Decode {
            message: format!("encoding the inventory: {e}"),
        })?;
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    let compressed = gz
        .write_all(&json)
        .and_then(|()| gz.finish())
        .map_err(|e| KubeError::Decode {
            message: format!("compressing the inventory: {e}"),
        })?;
    Ok(compressed
        .chunks(layout.part_bytes)
        .map(<[u8]>::to_vec)
        .collect())
}

/// The stored form of `app`'s inventory `inv`, entries sorted and deduplicated; without
/// the memo when it does not fit in `layout`.
fn encode(app: &AppKey, inv: &Inventory, layout: Layout) -> Result<Encoded, KubeError> {
    let mut entries = inv.entries.clone();
    entries.sort();
    entries.dedup();
    let parts = compress(&entries, Some(&inv.in_sync), layout)?;
    if parts.len() <= layout.max_parts {
        return Ok(Encoded {
            objects: entries.len(),
            parts,
            memo_dropped: false,
        });
    }
    let parts = compress(&entries, None, layout)?;
    if parts.len() > layout.max_parts {
        return Err(KubeError::InventoryTooLarge {
            app: app.to_string(),
            objects: entries.len(),
            bytes: parts.iter().map(Vec::len).sum(),
            limit: layout.part_bytes * layout.max_parts,
        });
    }
    Ok(Encoded {
        objects: entries.len(),
        parts,
        memo_dropped: !inv.in_sync.is_empty(),
    })
}

/// The memo from its JSON form: entries it cannot read are dropped.
fn memo(value: Option<serde_json::Value>) -> BTreeMap<String, Known> {
    let map: BTreeMap<String, serde_json::Value> = value
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    map.into_iter()
        .filter_map(|(key, known)| Some((key, serde_json::from_value(known).ok()?)))
        .collect()
}

/// The entries and memo of a decompressed format-3 payload.
fn decode_payload(
    compressed: &[u8],
    subject: &ObjectRef,
) -> Result<(Vec<ObjectRef>, BTreeMap<String, Known>), KubeError> {
    let corrupt = |what: String| KubeError::Decode {
        message: format!("{subject}: {what}"),
    };
    let mut json = Vec::new();
    GzDecoder::new(compressed)
        .read_to_end(&mut json)
        .map_err(|e| corrupt(format!("{INLINE_KEY}: {e}")))?;
    #[derive(Deserialize)]
    struct Stored {
        entries: Vec<ObjectRef>,
        #[serde(rename = "inSync")]
        in_sync: Option<serde_json::Value>,
    }
    let stored: Stored =
        serde_json::from_slice(&json).map_err(|e| corrupt(format!("entries: {e}")))?;
    Ok((stored.entries, memo(stored.in_sync)))
}

/// The inventory in the `data` of a format-1 or format-2 head `subject`. The memo is
/// read only in format 2.
fn decode_legacy(
    data: &BTreeMap<String, String>,
    format: u32,
    subject: &ObjectRef,
) -> Result<Inventory, KubeError> {
    let entries = match data.get("entries") {
        Some(text) => serde_json::from_str(text).map_err(|e| KubeError::Decode {
            message: format!("{subject}: entries: {e}"),
        })?,
        None => Vec::new(),
    };
    let in_sync = match format {
        FORMAT_2 => memo(
            data.get("inSync")
                .and_then(|text| serde_json::from_str(text).ok()),
        ),
        _ => BTreeMap::new(),
    };
    Ok(Inventory {
        revision: data.get("revision").cloned().unwrap_or_default(),
        entries,
        in_sync,
    })
}

/// What a head says.
#[derive(Debug)]
enum Head {
    /// Format 1 or 2: the whole inventory.
    Legacy(Inventory),
    /// Format 3.
    Current {
        revision: String,
        generation: u64,
        /// Shard count; 0 when the payload is inline.
        shards: usize,
        inline: Option<Vec<u8>>,
    },
}

impl Head {
    fn generation(&self) -> u64 {
        match self {
            Head::Legacy(_) => 0,
            Head::Current { generation, .. } => *generation,
        }
    }
}

fn parse_head(cm: ConfigMap, subject: &ObjectRef) -> Result<Head, KubeError> {
    let data = cm.data.unwrap_or_default();
    let field = |key: &str| -> Result<u64, KubeError> {
        let text = data.get(key).map_or("", String::as_str);
        text.parse().map_err(|_| KubeError::Decode {
            message: format!("{subject}: {key}: not a number: {text:?}"),
        })
    };
    let format = match data.get("format") {
        None => 1,
        Some(_) => field("format")?,
    };
    match format {
        1 | 2 => Ok(Head::Legacy(decode_legacy(&data, format as u32, subject)?)),
        3 => {
            let generation = field("generation")?;
            let shards = field("shards")? as usize;
            if shards > MAX_SHARDS {
                return Err(KubeError::Decode {
                    message: format!("{subject}: shards: {shards} is more than {MAX_SHARDS}"),
                });
            }
            let inline = cm
                .binary_data
                .unwrap_or_default()
                .remove(INLINE_KEY)
                .map(|b| b.0);
            if shards == 0 && inline.is_none() {
                return Err(KubeError::Decode {
                    message: format!("{subject}: binaryData.{INLINE_KEY} is missing"),
                });
            }
            Ok(Head::Current {
                revision: data.get("revision").cloned().unwrap_or_default(),
                generation,
                shards,
                inline,
            })
        }
        other => Err(KubeError::Decode {
            message: format!(
                "{subject}: format {other} is newer than this ferry reads (up to {FORMAT})"
            ),
        }),
    }
}

/// The part that `shard` holds for the head `id` of `generation` at `index`, or `None`
/// when it belongs to another write.
fn shard_part(shard: ConfigMap, id: &str, generation: u64, index: usize) -> Option<Vec<u8>> {
    let data = shard.data.unwrap_or_default();
    let matches = data.get("app").map(String::as_str) == Some(id)
        && data.get("generation") == Some(&generation.to_string())
        && data.get("index") == Some(&index.to_string());
    if !matches {
        return None;
    }
    shard.binary_data?.remove(PART_KEY).map(|b| b.0)
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn head_config_map(app: &AppKey, inv: &Inventory, generation: u64, encoded: &Encoded) -> ConfigMap {
    let sharded = encoded.parts.len() > 1;
    let data = BTreeMap::from([
        ("app".to_string(), app.to_string()),
        ("format".to_string(), FORMAT.to_string()),
        ("revision".to_string(), inv.revision.clone()),
        ("generation".to_string(), generation.to_string()),
        ("objects".to_string(), encoded.objects.to_string()),
        (
            "shards".to_string(),
            if sharded { encoded.parts.len() } else { 0 }.to_string(),
        ),
    ]);
    let binary_data = (!sharded).then(|| {
        BTreeMap::from([(
            INLINE_KEY.to_string(),
            ByteString(encoded.parts.first().cloned().unwrap_or_default()),
        )])
    });
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(Names::of(app).head),
            namespace: Some(SYSTEM_NAMESPACE.to_string()),
            labels: Some(labels(&[
                ("app.kubernetes.io/managed-by", "ferry"),
                (APP_LABEL, &app.name),
                (APP_NAMESPACE_LABEL, &app.namespace),
            ])),
            ..Default::default()
        },
        data: Some(data),
        binary_data,
        ..Default::default()
    }
}

fn shard_config_map(app: &AppKey, generation: u64, index: usize, part: &[u8]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(Names::of(app).shard(generation, index)),
            namespace: Some(SYSTEM_NAMESPACE.to_string()),
            labels: Some(labels(&[
                ("app.kubernetes.io/managed-by", "ferry"),
                (SHARD_LABEL, &app.name),
                (APP_NAMESPACE_LABEL, &app.namespace),
            ])),
            ..Default::default()
        },
        data: Some(labels(&[
            ("app", &app.to_string()),
            ("generation", &generation.to_string()),
            ("index", &index.to_string()),
        ])),
        binary_data: Some(BTreeMap::from([(
            PART_KEY.to_string(),
            ByteString(part.to_vec()),
        )])),
        ..Default::default()
    }
}

impl Cluster {
    fn inventory_config_maps(&self) -> Api<ConfigMap> {
        Api::namespaced(self.client().clone(), SYSTEM_NAMESPACE)
    }

    async fn read_head(&self, names: &Names) -> Result<Option<(Head, Version)>, KubeError> {
        let subject = config_map_ref(&names.head);
        let cm = self
            .inventory_config_maps()
            .get_opt(&subject.name)
            .await
            .map_err(|e| self.api_error(e, "get", &subject))?;
        let Some(cm) = cm else { return Ok(None) };
        let resource_version = cm.metadata.resource_version.clone().unwrap_or_default();
        let head = parse_head(cm, &subject)?;
        let version = Version {
            resource_version,
            generation: head.generation(),
            sharded: matches!(head, Head::Current { shards, .. } if shards > 0),
        };
        Ok(Some((head, version)))
    }

    /// The parts of generation `generation`'s `shards` shards, or `None` when one of them
    /// is missing or of another write.
    async fn read_parts(
        &self,
        names: &Names,
        generation: u64,
        shards: usize,
    ) -> Result<Option<Vec<Vec<u8>>>, KubeError> {
        let api = self.inventory_config_maps();
        let parts: Vec<Option<Vec<u8>>> = stream::iter(0..shards)
            .map(|index| {
                let api = api.clone();
                async move {
                    let subject = config_map_ref(&names.shard(generation, index));
                    let shard = api
                        .get_opt(&subject.name)
                        .await
                        .map_err(|e| self.api_error(e, "get", &subject))?;
                    Ok::<_, KubeError>(
                        shard.and_then(|s| shard_part(s, &names.id, generation, index)),
                    )
                }
            })
            .buffered(SHARD_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(parts.into_iter().collect())
    }

    /// Reads an app's inventory; `None` when the app was never applied. An app without
    /// one gets the inventory an earlier version kept under its name alone (in any
    /// namespace), which its next write replaces ([`Cluster::write_inventory`]).
    pub async fn read_inventory(&self, app: &AppKey) -> Result<Option<Inventory>, KubeError> {
        Ok(self.read_inventory_versioned(app).await?.inventory)
    }

    /// [`read_inventory`](Self::read_inventory) with the version of the head, for a later
    /// [`update_inventory_from`](Self::update_inventory_from).
    pub async fn read_inventory_versioned(
        &self,
        app: &AppKey,
    ) -> Result<VersionedInventory, KubeError> {
        if let Some((inv, version)) = self.read_versioned(&Names::of(app)).await? {
            return Ok(VersionedInventory {
                inventory: Some(inv),
                version: Some(version),
                legacy: false,
                written: false,
            });
        }
        let earlier = self.read_versioned(&Names::legacy(&app.name)).await?;
        Ok(VersionedInventory {
            legacy: earlier.is_some(),
            inventory: earlier.map(|(inv, _)| inv),
            version: None,
            written: false,
        })
    }

    /// Reads the inventory kept under `names` with the version of its head.
    async fn read_versioned(
        &self,
        names: &Names,
    ) -> Result<Option<(Inventory, Version)>, KubeError> {
        let subject = config_map_ref(&names.head);
        for _ in 0..READ_ATTEMPTS {
            let (revision, generation, shards, inline, version) =
                match self.read_head(names).await? {
                    None => return Ok(None),
                    Some((Head::Legacy(inv), version)) => return Ok(Some((inv, version))),
                    Some((
                        Head::Current {
                            revision,
                            generation,
                            shards,
                            inline,
                        },
                        version,
                    )) => (revision, generation, shards, inline, version),
                };
            let compressed = match inline.filter(|_| shards == 0) {
                Some(bytes) => bytes,
                None => match self.read_parts(names, generation, shards).await? {
                    Some(parts) => parts.concat(),
                    // A writer switched the head meanwhile: read it again.
                    None => continue,
                },
            };
            let (entries, in_sync) = decode_payload(&compressed, &subject)?;
            let inventory = Inventory {
                revision,
                entries,
                in_sync,
            };
            return Ok(Some((inventory, version)));
        }
        Err(KubeError::Decode {
            message: format!(
                "{subject}: its shards changed or went missing in {READ_ATTEMPTS} reads in a row"
            ),
        })
    }

    /// Deletes an app's inventory (after its objects were deleted): the head first, then
    /// every shard, and the same of an inventory an earlier version kept under its name.
    /// Already gone is not an error.
    pub async fn delete_inventory(&self, app: &AppKey) -> Result<(), KubeError> {
        for names in [Names::of(app), Names::legacy(&app.name)] {
            self.delete_config_map(&names.head).await?;
            self.delete_shards_except(&names, &[]).await?;
        }
        Ok(())
    }

    /// Deletes the shards of `names` other than those named in `keep`.
    async fn delete_shards_except(&self, names: &Names, keep: &[String]) -> Result<(), KubeError> {
        let api = self.inventory_config_maps();
        let listed = api
            .list(&ListParams::default().labels(&names.shards))
            .await
            .map_err(|e| self.api_error(e, "list", &config_map_ref("*")))?;
        let doomed: Vec<String> = listed
            .items
            .into_iter()
            .filter_map(|cm| cm.metadata.name)
            .filter(|n| !keep.contains(n))
            .collect();
        stream::iter(doomed)
            .map(|name| async move { self.delete_config_map(&name).await })
            .buffer_unordered(SHARD_CONCURRENCY)
            .try_collect()
            .await
    }

    /// Deletes one of the inventory ConfigMaps (with ferry's own identity); already gone
    /// is not an error.
    async fn delete_config_map(&self, name: &str) -> Result<(), KubeError> {
        match self
            .inventory_config_maps()
            .delete(name, &kube::api::DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.is_not_found() => Ok(()),
            Err(e) => Err(self.api_error(e, "delete", &config_map_ref(name))),
        }
    }

    /// Writes the head whole: created when there was none, else replaced on the
    /// condition that it is still at `previous`'s resourceVersion. Either fails with 409
    /// when another writer came first.
    async fn write_head(
        &self,
        head: &ConfigMap,
        previous: Option<&Version>,
    ) -> Result<String, KubeError> {
        let subject = config_map_ref(head.metadata.name.as_deref().unwrap_or_default());
        let api = self.inventory_config_maps();
        let params = PostParams {
            field_manager: Some(ferry_model::FIELD_MANAGER.into()),
            ..Default::default()
        };
        let written = match previous {
            None => api.create(&params, head).await,
            Some(version) => {
                let mut head = head.clone();
                head.metadata.resource_version = Some(version.resource_version.clone());
                api.replace(&subject.name, &params, &head).await
            }
        };
        let written = written.map_err(|e| self.api_error(e, "write", &subject))?;
        Ok(written.metadata.resource_version.unwrap_or_default())
    }

    /// Creates the shards of one write at the first generation after `after` whose shard
    /// names are all free (a shard is never overwritten: names taken by a concurrent
    /// writer, or left by a crashed one, are skipped); returns that generation.
    async fn create_shards(
        &self,
        app: &AppKey,
        after: u64,
        parts: &[Vec<u8>],
    ) -> Result<u64, KubeError> {
        let api = self.inventory_config_maps();
        let params = PostParams {
            field_manager: Some(ferry_model::FIELD_MANAGER.into()),
            ..Default::default()
        };
        let mut generation = after + 1;
        for _ in 0..GENERATION_ATTEMPTS {
            let shards: Vec<ConfigMap> = (parts.iter().enumerate())
                .map(|(index, part)| shard_config_map(app, generation, index, part))
                .collect();
            let created: Result<(), KubeError> = stream::iter(shards)
                .map(|shard| {
                    let (api, params) = (&api, &params);
                    async move {
                        let subject =
                            config_map_ref(shard.metadata.name.as_deref().unwrap_or_default());
                        api.create(params, &shard)
                            .await
                            .map(drop)
                            .map_err(|e| self.api_error(e, "create", &subject))
                    }
                })
                .buffer_unordered(SHARD_CONCURRENCY)
                .try_collect()
                .await;
            match created {
                Ok(()) => return Ok(generation),
                Err(e) if is_conflict(&e) => generation += 1,
                Err(e) => return Err(e),
            }
        }
        Err(KubeError::Api {
            verb: "create",
            subject: Box::new(config_map_ref(&Names::of(app).shard(generation, 0))),
            code: 409,
            message: format!("the shard names of {GENERATION_ATTEMPTS} generations are taken"),
        })
    }

    /// Writes an app's inventory (creating `ferry-system` when missing), whatever it
    /// held: [`update_inventory`](Self::update_inventory) with `inv`.
    pub async fn write_inventory(&self, app: &AppKey, inv: &Inventory) -> Result<(), KubeError> {
        self.update_inventory(app, |_| inv.clone()).await.map(drop)
    }

    /// Reads an app's inventory, passes it to `update` (`None`: there is none) and writes
    /// what `update` returns, on the condition that nobody wrote it in between (the
    /// head's resourceVersion): [`update_inventory_from`](Self::update_inventory_from)
    /// what it reads now. Returns what was written.
    pub async fn update_inventory(
        &self,
        app: &AppKey,
        update: impl FnMut(Option<&Inventory>) -> Inventory,
    ) -> Result<Inventory, KubeError> {
        let read = self.read_inventory_versioned(app).await?;
        let written = self.update_inventory_from(app, read, update).await?;
        Ok(written.inventory.unwrap_or_default())
    }

    /// Passes the inventory `read` earlier to `update` and writes what `update` returns,
    /// on the condition that nobody wrote it since (the head's resourceVersion, or no
    /// head); on a conflict (or a head deleted meanwhile) it reads again and calls
    /// `update` again, up to [`CONFLICT_ATTEMPTS`] times, so that two writers never lose
    /// each other's entries. Creates `ferry-system` when missing. Returns what was
    /// written with its version, the condition of the next write. An update that
    /// changes nothing in what an earlier call returned (this writer's own last write)
    /// writes nothing.
    ///
    /// A write of a new generation creates its shards under new names (when sharded),
    /// then switches the head to them, then deletes the old shards (when either is
    /// sharded): a crash at any point leaves the previous or the new inventory whole.
    /// An app without an inventory gets the one an earlier version kept under its name
    /// alone, which its first write deletes once the new head is written.
    pub async fn update_inventory_from(
        &self,
        app: &AppKey,
        mut read: VersionedInventory,
        mut update: impl FnMut(Option<&Inventory>) -> Inventory,
    ) -> Result<VersionedInventory, KubeError> {
        self.ensure_namespace_with(self.client(), "", SYSTEM_NAMESPACE)
            .await?;
        let legacy = Names::legacy(&app.name);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let inv = update(read.inventory.as_ref());
            if read.written && read.inventory.as_ref() == Some(&inv) {
                // Nothing to change in this writer's own last write.
                return Ok(read);
            }
            match self.write_version(app, &inv, read.version.as_ref()).await {
                Err(e) if attempt < CONFLICT_ATTEMPTS && is_stale(&e, read.version.is_some()) => {
                    tracing::debug!(
                        app = %app,
                        attempt,
                        "inventory written meanwhile, reading it again: {e}"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(50 * attempt as u64)).await;
                }
                Err(KubeError::NamespaceNotFound { .. }) if attempt < CONFLICT_ATTEMPTS => {
                    // Deleted since it was seen (and forgotten by the error).
                    self.ensure_namespace_with(self.client(), "", SYSTEM_NAMESPACE)
                        .await?;
                }
                Err(e) => return Err(e),
                Ok(version) => {
                    if read.legacy {
                        self.delete_config_map(&legacy.head).await?;
                        self.delete_shards_except(&legacy, &[]).await?;
                    }
                    return Ok(VersionedInventory {
                        inventory: Some(inv),
                        version: Some(version),
                        legacy: false,
                        written: true,
                    });
                }
            }
            read = self.read_inventory_versioned(app).await?;
        }
    }

    /// One conditional write of `inv` over the head at `previous`.
    async fn write_version(
        &self,
        app: &AppKey,
        inv: &Inventory,
        previous: Option<&Version>,
    ) -> Result<Version, KubeError> {
        let names = Names::of(app);
        let encoded = encode(app, inv, LAYOUT)?;
        if encoded.memo_dropped {
            tracing::warn!(
                app = %app,
                objects = encoded.objects,
                memo = inv.in_sync.len(),
                "the inventory does not fit in {MAX_SHARDS} shards with its in-sync memo; \
                 the memo is dropped"
            );
        }
        let was_sharded = previous.is_some_and(|v| v.sharded);
        let after = previous.map_or(0, |v| v.generation);
        let sharded = encoded.parts.len() > 1;
        let generation = match sharded {
            true => self.create_shards(app, after, &encoded.parts).await?,
            false => after + 1,
        };
        let resource_version = self
            .write_head(&head_config_map(app, inv, generation, &encoded), previous)
            .await?;
        let version = Version {
            resource_version,
            generation,
            sharded,
        };
        let keep: Vec<String> = match sharded {
            true => (0..encoded.parts.len())
                .map(|i| names.shard(generation, i))
                .collect(),
            false => Vec::new(),
        };
        // Only a sharded inventory (before or now) may leave shards to delete: an inline
        // one skips the LIST, which would cost the API server a scan of every inventory on
        // each write. Shards of a write that crashed before its head switch are deleted by
        // the next sharded write, or with the inventory.
        if !(sharded || was_sharded) {
            return Ok(version);
        }
        if let Err(e) = self.delete_shards_except(&names, &keep).await {
            // The inventory is whole; the next write deletes the stale shards.
            tracing::warn!(app = %app, "deleting stale inventory shards: {e}");
        }
        Ok(version)
    }
}

/// A 409: another writer came first (a changed resourceVersion, a name taken).
fn is_conflict(e: &KubeError) -> bool {
    matches!(e, KubeError::Api { code: 409, .. })
}

/// Whether a write over a head read earlier failed because that read is out of date:
/// a conflict, or (`replaced`: the write was a replacement) a head deleted since.
fn is_stale(e: &KubeError, replaced: bool) -> bool {
    is_conflict(e) || (replaced && matches!(e, KubeError::Api { code: 404, .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_model::Digest;

    fn web() -> AppKey {
        AppKey::new("team-a", "web")
    }

    fn big_app() -> AppKey {
        AppKey::new("team-a", "big")
    }

    fn subject() -> ObjectRef {
        config_map_ref(&Names::of(&web()).head)
    }

    fn head(data: &[(&str, &str)]) -> ConfigMap {
        ConfigMap {
            data: Some(labels(data)),
            ..Default::default()
        }
    }

    fn legacy(cm: ConfigMap) -> Inventory {
        match parse_head(cm, &subject()).unwrap() {
            Head::Legacy(inv) => inv,
            other => panic!("not a legacy head: {other:?}"),
        }
    }

    fn known(n: u8) -> Known {
        Known {
            manifest: Digest([n; 32]),
            live: Digest([n.wrapping_add(1); 32]),
        }
    }

    /// `n` ConfigMap entries with a memo of pseudo-random digests (which compress badly,
    /// as real ones do).
    fn big(n: usize) -> Inventory {
        let entries: Vec<ObjectRef> = (0..n)
            .map(|i| ObjectRef::new("v1", "ConfigMap", Some("big"), &format!("cm-{i:05}")))
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut digest = || {
            let mut bytes = [0; 32];
            for b in &mut bytes {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *b = state as u8;
            }
            Digest(bytes)
        };
        let in_sync = entries
            .iter()
            .map(|e| {
                let k = Known {
                    manifest: digest(),
                    live: digest(),
                };
                (e.key(), k)
            })
            .collect();
        Inventory {
            revision: "abc".into(),
            entries,
            in_sync,
        }
    }

    /// Decodes what [`encode`] made, as a reader would after the shards were read.
    fn round_trip(encoded: &Encoded) -> (Vec<ObjectRef>, BTreeMap<String, Known>) {
        decode_payload(&encoded.parts.concat(), &subject()).unwrap()
    }

    #[test]
    fn an_unreadable_memo_is_dropped_and_the_entries_read() {
        let entry = ObjectRef::new("v1", "ConfigMap", Some("ns"), "a");
        let entries = serde_json::to_string(&[&entry]).unwrap();
        let data = |in_sync: &str| {
            head(&[
                ("revision", "abc"),
                ("entries", &entries),
                ("format", "2"),
                ("inSync", in_sync),
            ])
        };
        let old = legacy(data(&format!(r#"{{"{}":[1,2]}}"#, entry.key())));
        assert_eq!(old.revision, "abc");
        assert_eq!(old.entries, std::slice::from_ref(&entry));
        assert!(old.in_sync.is_empty(), "{:?}", old.in_sync);
        assert!(legacy(data("not JSON")).in_sync.is_empty());

        let memo = BTreeMap::from([(entry.key(), known(1))]);
        let mixed = format!(
            r#"{{"{}":{},"b":[3,4]}}"#,
            entry.key(),
            serde_json::to_string(&known(1)).unwrap()
        );
        assert_eq!(legacy(data(&mixed)).in_sync, memo);
        let round = serde_json::to_string(&memo).unwrap();
        assert_eq!(legacy(data(&round)).in_sync, memo);
    }

    #[test]
    fn an_inventory_of_the_first_format_keeps_its_entries_and_drops_its_memo() {
        let inv = legacy(head(&[
            ("app", "web"),
            ("revision", "abc"),
            (
                "entries",
                r#"[{"group":"","version":"v1","kind":"ConfigMap","namespace":"web","name":"cfg"}]"#,
            ),
            ("inSync", r#"{"web/cfg":[1,2]}"#),
        ]));
        assert_eq!(inv.revision, "abc");
        assert_eq!(
            inv.entries,
            [ObjectRef::new("v1", "ConfigMap", Some("web"), "cfg")]
        );
        assert!(inv.in_sync.is_empty(), "{:?}", inv.in_sync);
    }

    #[test]
    fn a_newer_format_or_a_broken_head_is_an_error_naming_the_field() {
        let err = parse_head(head(&[("format", "9")]), &subject()).unwrap_err();
        assert!(err.to_string().contains("format 9 is newer"), "{err}");
        let err = parse_head(head(&[("format", "3"), ("generation", "x")]), &subject())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ferry-inventory-team-a.web") && err.contains("generation"),
            "{err}"
        );
        let err = parse_head(
            head(&[("format", "3"), ("generation", "1"), ("shards", "0")]),
            &subject(),
        )
        .unwrap_err();
        assert!(err.to_string().contains(INLINE_KEY), "{err}");
    }

    #[test]
    fn a_small_inventory_is_one_inline_part_in_the_head() {
        let cfg = ObjectRef::new("v1", "ConfigMap", Some("web"), "cfg");
        let deploy = ObjectRef::new("apps/v1", "Deployment", Some("web"), "d");
        let inv = Inventory {
            revision: "abc".into(),
            entries: vec![deploy.clone(), cfg.clone(), deploy.clone()],
            in_sync: BTreeMap::from([(cfg.key(), known(1))]),
        };
        let encoded = encode(&web(), &inv, LAYOUT).unwrap();
        assert_eq!(encoded.parts.len(), 1);
        assert_eq!(encoded.objects, 2);
        assert!(!encoded.memo_dropped);
        let cm = head_config_map(&web(), &inv, 7, &encoded);
        let data = cm.data.clone().unwrap();
        assert_eq!(data["format"], "3");
        assert_eq!(data["generation"], "7");
        assert_eq!(data["shards"], "0");
        assert_eq!(data["objects"], "2");
        match parse_head(cm, &subject()).unwrap() {
            Head::Current {
                revision,
                generation: 7,
                shards: 0,
                inline: Some(bytes),
            } => {
                assert_eq!(revision, "abc");
                let (entries, in_sync) = decode_payload(&bytes, &subject()).unwrap();
                let mut sorted = vec![cfg, deploy];
                sorted.sort();
                assert_eq!(entries, sorted);
                assert_eq!(in_sync, inv.in_sync);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn twenty_thousand_entries_compress_into_a_few_shards() {
        let inv = big(20_000);
        let encoded = encode(&big_app(), &inv, LAYOUT).unwrap();
        let total: usize = encoded.parts.iter().map(Vec::len).sum();
        assert!(
            (2..=4).contains(&encoded.parts.len()),
            "{} parts, {total} bytes",
            encoded.parts.len()
        );
        assert!(encoded.parts.iter().all(|p| p.len() <= SHARD_BYTES));
        assert!(!encoded.memo_dropped);
        let (entries, in_sync) = round_trip(&encoded);
        assert_eq!(entries, inv.entries);
        assert_eq!(in_sync, inv.in_sync);

        let without_memo = compress(&inv.entries, None, LAYOUT).unwrap();
        assert_eq!(without_memo.len(), 1, "the entries alone fit in the head");
    }

    #[test]
    fn a_memo_that_does_not_fit_is_dropped_and_entries_that_do_not_fit_are_an_error() {
        let inv = big(2_000);
        let parts = |layout| encode(&big_app(), &inv, layout).unwrap();
        let roomy = parts(Layout {
            part_bytes: 4096,
            max_parts: 1000,
        });
        assert!(!roomy.memo_dropped);
        assert!(roomy.parts.len() > 10, "{}", roomy.parts.len());
        assert_eq!(round_trip(&roomy).1, inv.in_sync);

        let entries_only = compress(
            &inv.entries,
            None,
            Layout {
                part_bytes: 4096,
                max_parts: 1000,
            },
        )
        .unwrap()
        .len();
        let tight = parts(Layout {
            part_bytes: 4096,
            max_parts: entries_only,
        });
        assert!(tight.memo_dropped);
        assert_eq!(tight.parts.len(), entries_only);
        let (entries, in_sync) = round_trip(&tight);
        assert_eq!(entries, inv.entries);
        assert!(in_sync.is_empty());

        let err = encode(
            &big_app(),
            &inv,
            Layout {
                part_bytes: 4096,
                max_parts: entries_only - 1,
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, KubeError::InventoryTooLarge { objects: 2000, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("big"), "{err}");
    }

    #[test]
    fn names_are_unique_per_app_and_apart_from_an_earlier_versions() {
        let a = Names::of(&web());
        let b = Names::of(&AppKey::new("team-b", "web"));
        assert_eq!(a.head, "ferry-inventory-team-a.web");
        assert_ne!(a.head, b.head);
        assert_ne!(a.shard(1, 0), b.shard(1, 0));
        assert_eq!(
            a.shards,
            "ferry.dev/inventory=web,ferry.dev/app-namespace=team-a"
        );
        let old = Names::legacy("web");
        assert_eq!(old.head, "ferry-inventory-web");
        assert_eq!(old.shard(3, 1), "ferry-inventory.web.3.1");
        assert_eq!(
            old.shards,
            "ferry.dev/inventory=web,!ferry.dev/app-namespace"
        );
        let cm = head_config_map(
            &web(),
            &Inventory::default(),
            1,
            &encode(&web(), &Inventory::default(), LAYOUT).unwrap(),
        );
        assert_eq!(cm.data.unwrap()["app"], "team-a/web");
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(
            (
                labels[APP_LABEL].as_str(),
                labels[APP_NAMESPACE_LABEL].as_str()
            ),
            ("web", "team-a")
        );
    }

    #[test]
    fn a_shard_of_another_write_is_not_taken() {
        let part = [1, 2, 3];
        let shard = || shard_config_map(&web(), 4, 1, &part);
        let id = "team-a/web";
        assert_eq!(shard_part(shard(), id, 4, 1), Some(part.to_vec()));
        assert_eq!(shard_part(shard(), id, 5, 1), None, "other generation");
        assert_eq!(shard_part(shard(), id, 4, 0), None, "other index");
        assert_eq!(shard_part(shard(), "team-b/web", 4, 1), None, "other app");
        assert_eq!(
            shard_part(shard(), "web", 4, 1),
            None,
            "an earlier version's"
        );
        assert_eq!(
            shard().metadata.name.as_deref(),
            Some("ferry-inventory.team-a.web.4.1")
        );
        let labels = shard().metadata.labels.unwrap();
        assert_eq!(labels[SHARD_LABEL], "web");
        assert_eq!(labels[APP_NAMESPACE_LABEL], "team-a");
    }

    #[test]
    fn mixed_parts_fail_the_gzip_check() {
        let a = encode(
            &big_app(),
            &big(3_000),
            Layout {
                part_bytes: 8192,
                max_parts: 1000,
            },
        )
        .unwrap();
        let mut other = big(3_000);
        other.revision = "def".into();
        other.in_sync.values_mut().for_each(|k| *k = known(9));
        let b = encode(
            &big_app(),
            &other,
            Layout {
                part_bytes: 8192,
                max_parts: 1000,
            },
        )
        .unwrap();
        let mut mixed = a.parts.clone();
        mixed[1] = b.parts[1].clone();
        let err = decode_payload(&mixed.concat(), &subject()).unwrap_err();
        assert!(
            err.to_string().contains("ferry-inventory-team-a.web"),
            "{err}"
        );
    }
}
