//! The storage pool and volume procedures, and storage pool events.

use super::{CallResult, Failure, call, err, host_error, int, rpc_error};
use crate::client::{Client, POOL_EVENT_LIFECYCLE, POOL_EVENT_REFRESH};
use rvirt_host::storage::list_flags;
use rvirt_host::{Connection, PoolId, StoragePool, StorageVol, VolumeId};
use rvirt_wire::RemoteProcedure as P;
use rvirt_wire::procs;
use rvirt_wire::protocol::{self, NonnullStoragePool, NonnullStorageVol, error_code, error_domain};
use rvirt_wire::remote::*;

fn pool(conn: &Connection, p: &NonnullStoragePool) -> StoragePool {
    conn.storage_pool_handle(PoolId {
        name: p.name.clone(),
        uuid: uuid::Uuid::from_bytes(p.uuid),
    })
}

fn vol(conn: &Connection, v: &NonnullStorageVol) -> StorageVol {
    conn.storage_vol_handle(VolumeId {
        pool: v.pool.clone(),
        name: v.name.clone(),
        key: v.key.clone(),
    })
}

pub(super) fn wire_pool(p: &StoragePool) -> NonnullStoragePool {
    NonnullStoragePool {
        name: p.name().to_string(),
        uuid: *p.uuid().as_bytes(),
    }
}

pub(super) fn wire_vol(v: &StorageVol) -> NonnullStorageVol {
    NonnullStorageVol {
        pool: v.pool_name().to_string(),
        name: v.name().to_string(),
        key: v.key().to_string(),
    }
}

fn pool_ret(p: rvirt_host::Result<StoragePool>) -> Result<StoragePoolRet, Failure> {
    p.map(|p| StoragePoolRet {
        pool: wire_pool(&p),
    })
    .map_err(host_error)
}

fn vol_ret(v: rvirt_host::Result<StorageVol>) -> Result<StorageVolRet, Failure> {
    v.map(|v| StorageVolRet { vol: wire_vol(&v) })
        .map_err(host_error)
}

/// `maxnames` of the legacy list calls: 0..=`max`, as libvirt's daemon checks it.
pub(super) fn names_max(requested: i32, max: usize, what: &str) -> Result<usize, Failure> {
    usize::try_from(requested)
        .ok()
        .filter(|&n| n <= max)
        .ok_or_else(|| {
            rpc_error(format!(
                "maxnames {requested} for {what} out of range (0..={max})"
            ))
        })
}

/// A list-all result: every element when `need_results`, else none, and the count;
/// more than the protocol carries is an error.
pub(super) fn list_all<T, W>(
    items: Vec<T>,
    need_results: i32,
    max: usize,
    what: &str,
    wire: impl Fn(&T) -> W,
) -> Result<(Vec<W>, u32), Failure> {
    if items.len() > max {
        return Err(rpc_error(format!(
            "too many {what}: {} (at most {max})",
            items.len()
        )));
    }
    let ret = items.len() as u32;
    let out = if need_results != 0 {
        items.iter().map(wire).collect()
    } else {
        Vec::new()
    };
    Ok((out, ret))
}

fn pool_names(conn: &Connection, flags: u32, max: usize) -> Result<StoragePoolNamesRet, Failure> {
    let pools = conn.list_all_storage_pools(flags).map_err(host_error)?;
    Ok(StoragePoolNamesRet {
        names: pools
            .iter()
            .map(|p| p.name().to_string())
            .take(max)
            .collect(),
    })
}

fn pool_count(conn: &Connection, flags: u32) -> Result<NumRet, Failure> {
    let n = conn
        .list_all_storage_pools(flags)
        .map_err(host_error)?
        .len();
    Ok(NumRet {
        num: i32::try_from(n).unwrap_or(i32::MAX),
    })
}

/// Storage pool event ids a client may register: lifecycle and refresh (all there are).
pub(super) fn check_pool_event_id(id: i32) -> Result<(), Failure> {
    match id {
        POOL_EVENT_LIFECYCLE | POOL_EVENT_REFRESH => Ok(()),
        _ => Err(err(
            error_code::INVALID_ARG,
            error_domain::RPC,
            format!("invalid argument: unsupported storage pool event ID {id}"),
        )),
    }
}

/// Answers a storage pool or volume procedure; `None` if `procedure` is not one.
pub(super) fn dispatch(
    client: &Client,
    c: &Connection,
    procedure: P,
    payload: &[u8],
) -> Option<CallResult> {
    Some(match procedure {
        P::ConnectNumOfStoragePools => {
            call::<procs::ConnectNumOfStoragePools>(payload, |()| pool_count(c, list_flags::ACTIVE))
        }
        P::ConnectNumOfDefinedStoragePools => {
            call::<procs::ConnectNumOfDefinedStoragePools>(payload, |()| {
                pool_count(c, list_flags::INACTIVE)
            })
        }
        P::ConnectListStoragePools => call::<procs::ConnectListStoragePools>(payload, |a| {
            let max = names_max(a.maxnames, protocol::STORAGE_POOL_LIST_MAX, "storage pools")?;
            pool_names(c, list_flags::ACTIVE, max)
        }),
        P::ConnectListDefinedStoragePools => {
            call::<procs::ConnectListDefinedStoragePools>(payload, |a| {
                let max = names_max(a.maxnames, protocol::STORAGE_POOL_LIST_MAX, "storage pools")?;
                pool_names(c, list_flags::INACTIVE, max)
            })
        }
        P::ConnectListAllStoragePools => call::<procs::ConnectListAllStoragePools>(payload, |a| {
            let pools = c.list_all_storage_pools(a.flags).map_err(host_error)?;
            let (pools, ret) = list_all(
                pools,
                a.need_results,
                protocol::STORAGE_POOL_LIST_MAX,
                "storage pools",
                wire_pool,
            )?;
            Ok(ConnectListAllStoragePoolsRet { pools, ret })
        }),
        P::ConnectFindStoragePoolSources => {
            call::<procs::ConnectFindStoragePoolSources>(payload, |a| {
                c.find_storage_pool_sources(&a.r#type, a.src_spec.as_deref(), a.flags)
                    .map(|xml| XmlRet { xml })
                    .map_err(host_error)
            })
        }
        P::ConnectGetStoragePoolCapabilities => {
            call::<procs::ConnectGetStoragePoolCapabilities>(payload, |a| {
                c.storage_pool_capabilities(a.flags)
                    .map(|capabilities| ConnectGetStoragePoolCapabilitiesRet { capabilities })
                    .map_err(host_error)
            })
        }
        P::StoragePoolCreateXml => call::<procs::StoragePoolCreateXml>(payload, |a| {
            pool_ret(c.storage_pool_create_xml(&a.xml, a.flags))
        }),
        P::StoragePoolDefineXml => call::<procs::StoragePoolDefineXml>(payload, |a| {
            pool_ret(c.storage_pool_define_xml(&a.xml, a.flags))
        }),
        P::StoragePoolCreate => call::<procs::StoragePoolCreate>(payload, |a| {
            pool(c, &a.pool).create(a.flags).map_err(host_error)
        }),
        P::StoragePoolBuild => call::<procs::StoragePoolBuild>(payload, |a| {
            pool(c, &a.pool).build(a.flags).map_err(host_error)
        }),
        P::StoragePoolDestroy => call::<procs::StoragePoolDestroy>(payload, |a| {
            pool(c, &a.pool).destroy().map_err(host_error)
        }),
        P::StoragePoolDelete => call::<procs::StoragePoolDelete>(payload, |a| {
            pool(c, &a.pool).delete(a.flags).map_err(host_error)
        }),
        P::StoragePoolUndefine => call::<procs::StoragePoolUndefine>(payload, |a| {
            pool(c, &a.pool).undefine().map_err(host_error)
        }),
        P::StoragePoolRefresh => call::<procs::StoragePoolRefresh>(payload, |a| {
            pool(c, &a.pool).refresh(a.flags).map_err(host_error)
        }),
        P::StoragePoolLookupByName => call::<procs::StoragePoolLookupByName>(payload, |a| {
            pool_ret(c.lookup_storage_pool_by_name(&a.name))
        }),
        P::StoragePoolLookupByUuid => call::<procs::StoragePoolLookupByUuid>(payload, |a| {
            pool_ret(c.lookup_storage_pool_by_uuid(uuid::Uuid::from_bytes(a.uuid)))
        }),
        P::StoragePoolLookupByVolume => {
            call::<procs::StoragePoolLookupByVolume>(payload, |a| pool_ret(vol(c, &a.vol).pool()))
        }
        P::StoragePoolLookupByTargetPath => {
            call::<procs::StoragePoolLookupByTargetPath>(payload, |a| {
                pool_ret(c.lookup_storage_pool_by_target_path(&a.path))
            })
        }
        P::StoragePoolGetInfo => call::<procs::StoragePoolGetInfo>(payload, |a| {
            let i = pool(c, &a.pool).get_info().map_err(host_error)?;
            Ok(StoragePoolGetInfoRet {
                state: u8::try_from(i.state).unwrap_or(0),
                capacity: i.capacity,
                allocation: i.allocation,
                available: i.available,
            })
        }),
        P::StoragePoolGetXmlDesc => call::<procs::StoragePoolGetXmlDesc>(payload, |a| {
            Ok(XmlRet {
                xml: pool(c, &a.pool).get_xml_desc(a.flags).map_err(host_error)?,
            })
        }),
        P::StoragePoolGetAutostart => call::<procs::StoragePoolGetAutostart>(payload, |a| {
            Ok(StoragePoolGetAutostartRet {
                autostart: int(pool(c, &a.pool).get_autostart().map_err(host_error)?),
            })
        }),
        P::StoragePoolSetAutostart => call::<procs::StoragePoolSetAutostart>(payload, |a| {
            pool(c, &a.pool)
                .set_autostart(a.autostart != 0)
                .map_err(host_error)
        }),
        P::StoragePoolIsActive => call::<procs::StoragePoolIsActive>(payload, |a| {
            Ok(StoragePoolIsActiveRet {
                active: int(pool(c, &a.pool).is_active().map_err(host_error)?),
            })
        }),
        P::StoragePoolIsPersistent => call::<procs::StoragePoolIsPersistent>(payload, |a| {
            Ok(StoragePoolIsPersistentRet {
                persistent: int(pool(c, &a.pool).is_persistent().map_err(host_error)?),
            })
        }),
        P::StoragePoolNumOfVolumes => call::<procs::StoragePoolNumOfVolumes>(payload, |a| {
            let n = pool(c, &a.pool)
                .list_all_volumes(0)
                .map_err(host_error)?
                .len();
            Ok(NumRet {
                num: i32::try_from(n).unwrap_or(i32::MAX),
            })
        }),
        P::StoragePoolListVolumes => call::<procs::StoragePoolListVolumes>(payload, |a| {
            let max = names_max(
                a.maxnames,
                protocol::STORAGE_VOL_LIST_MAX,
                "storage volumes",
            )?;
            let vols = pool(c, &a.pool).list_all_volumes(0).map_err(host_error)?;
            Ok(StoragePoolListVolumesRet {
                names: vols
                    .iter()
                    .map(|v| v.name().to_string())
                    .take(max)
                    .collect(),
            })
        }),
        P::StoragePoolListAllVolumes => call::<procs::StoragePoolListAllVolumes>(payload, |a| {
            let vols = pool(c, &a.pool)
                .list_all_volumes(a.flags)
                .map_err(host_error)?;
            let (vols, ret) = list_all(
                vols,
                a.need_results,
                protocol::STORAGE_VOL_LIST_MAX,
                "storage volumes",
                wire_vol,
            )?;
            Ok(StoragePoolListAllVolumesRet { vols, ret })
        }),
        P::StorageVolCreateXml => call::<procs::StorageVolCreateXml>(payload, |a| {
            vol_ret(pool(c, &a.pool).create_vol_xml(&a.xml, a.flags))
        }),
        P::StorageVolCreateXmlFrom => call::<procs::StorageVolCreateXmlFrom>(payload, |a| {
            let from = vol(c, &a.clonevol);
            vol_ret(pool(c, &a.pool).create_vol_xml_from(&a.xml, &from, a.flags))
        }),
        P::StorageVolDelete => call::<procs::StorageVolDelete>(payload, |a| {
            vol(c, &a.vol).delete(a.flags).map_err(host_error)
        }),
        P::StorageVolWipe => call::<procs::StorageVolWipe>(payload, |a| {
            vol(c, &a.vol).wipe(a.flags).map_err(host_error)
        }),
        P::StorageVolWipePattern => call::<procs::StorageVolWipePattern>(payload, |a| {
            vol(c, &a.vol)
                .wipe_pattern(a.algorithm, a.flags)
                .map_err(host_error)
        }),
        P::StorageVolResize => call::<procs::StorageVolResize>(payload, |a| {
            vol(c, &a.vol)
                .resize(a.capacity, a.flags)
                .map_err(host_error)
        }),
        P::StorageVolLookupByName => call::<procs::StorageVolLookupByName>(payload, |a| {
            vol_ret(pool(c, &a.pool).lookup_vol_by_name(&a.name))
        }),
        P::StorageVolLookupByKey => call::<procs::StorageVolLookupByKey>(payload, |a| {
            vol_ret(c.lookup_storage_vol_by_key(&a.key))
        }),
        P::StorageVolLookupByPath => call::<procs::StorageVolLookupByPath>(payload, |a| {
            vol_ret(c.lookup_storage_vol_by_path(&a.path))
        }),
        P::StorageVolGetInfo => {
            call::<procs::StorageVolGetInfo>(payload, |a| vol_info(vol(c, &a.vol).get_info()))
        }
        P::StorageVolGetInfoFlags => call::<procs::StorageVolGetInfoFlags>(payload, |a| {
            vol_info(vol(c, &a.vol).get_info_flags(a.flags))
        }),
        P::StorageVolGetXmlDesc => call::<procs::StorageVolGetXmlDesc>(payload, |a| {
            Ok(XmlRet {
                xml: vol(c, &a.vol).get_xml_desc(a.flags).map_err(host_error)?,
            })
        }),
        P::StorageVolGetPath => call::<procs::StorageVolGetPath>(payload, |a| {
            Ok(StorageVolGetPathRet {
                name: vol(c, &a.vol).get_path().map_err(host_error)?,
            })
        }),
        P::ConnectStoragePoolEventRegisterAny => {
            call::<procs::ConnectStoragePoolEventRegisterAny>(payload, |a| {
                check_pool_event_id(a.event_id)?;
                let callback_id =
                    client.with_events(|ev| ev.add_pool(a.event_id, a.pool.map(|p| p.uuid)));
                if let Err(e) = client.ensure_pool_subscribed() {
                    client.with_events(|ev| ev.remove_pool(callback_id));
                    return Err(host_error(e));
                }
                Ok(CallbackIdRet { callback_id })
            })
        }
        P::ConnectStoragePoolEventDeregisterAny => {
            call::<procs::ConnectStoragePoolEventDeregisterAny>(payload, |a| {
                if client.with_events(|ev| ev.remove_pool(a.callback_id)) {
                    Ok(())
                } else {
                    Err(err(
                        error_code::INVALID_ARG,
                        error_domain::RPC,
                        format!(
                            "storage pool event callback {} not registered",
                            a.callback_id
                        ),
                    ))
                }
            })
        }
        _ => return None,
    })
}

fn vol_info(
    i: rvirt_host::Result<rvirt_host::VolumeInfo>,
) -> Result<StorageVolGetInfoRet, Failure> {
    let i = i.map_err(host_error)?;
    Ok(StorageVolGetInfoRet {
        r#type: i8::try_from(i.kind).unwrap_or(-1),
        capacity: i.capacity,
        allocation: i.allocation,
    })
}

/// `STORAGE_VOL_UPLOAD` / `STORAGE_VOL_DOWNLOAD`: opens the volume's stream and registers
/// it under the call's serial; its worker starts once the reply is sent
/// ([`crate::streams::start`]).
pub(super) fn open_stream(
    client: &Client,
    conn: &Connection,
    procedure: P,
    serial: u32,
    payload: &[u8],
) -> CallResult {
    let upload = procedure == P::StorageVolUpload;
    let open = |a: StorageVolTransferArgs| -> Result<(), Failure> {
        let v = vol(conn, &a.vol);
        let stream = if upload {
            v.upload(a.offset, a.length, a.flags)
        } else {
            v.download(a.offset, a.length, a.flags)
        }
        .map_err(host_error)?;
        client
            .with_streams(|s| {
                s.register(
                    serial,
                    procedure.number(),
                    crate::streams::Opened::Volume { stream, upload },
                )
            })
            .map_err(rpc_error)
    };
    if upload {
        call::<procs::StorageVolUpload>(payload, open)
    } else {
        call::<procs::StorageVolDownload>(payload, open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_all_counts_and_limits() {
        let (items, n) = list_all(vec![1, 2, 3], 1, 10, "x", |v| *v * 2).unwrap();
        assert_eq!((items, n), (vec![2, 4, 6], 3));
        let (items, n) = list_all(vec![1, 2, 3], 0, 10, "x", |v| *v).unwrap();
        assert!(items.is_empty());
        assert_eq!(n, 3, "the count without the results");
        let e = list_all(vec![0; 11], 1, 10, "pools", |v| *v).unwrap_err();
        assert_eq!(e.code, error_code::RPC);
        assert!(names_max(-1, 10, "x").is_err() && names_max(11, 10, "x").is_err());
        assert_eq!(names_max(10, 10, "x").unwrap(), 10);
    }

    #[test]
    fn pool_event_ids() {
        assert!(check_pool_event_id(0).is_ok() && check_pool_event_id(1).is_ok());
        assert_eq!(
            check_pool_event_id(2).unwrap_err().code,
            error_code::INVALID_ARG
        );
    }
}
