//! Argument and return types of the storage pool, storage volume and secret procedures
//! (and their event messages), from `remote_protocol.x`.
//!
//! One Rust type stands for every libvirt struct of the same layout (its doc comment
//! names them), as [`DomainArgs`](super::DomainArgs) does for the domain procedures.

use crate::protocol::{
    NonnullSecret, NonnullStoragePool, NonnullStorageVol, SECRET_LIST_MAX, SECRET_VALUE_MAX,
    STORAGE_POOL_LIST_MAX, STORAGE_VOL_LIST_MAX, Uuid,
};
use serde::{Deserialize, Serialize};

xdr_structs! {
    // ----- shared layouts -----

    /// `{remote_nonnull_string xml; unsigned int flags}`: `storage_pool_create_xml_args`,
    /// `storage_pool_define_xml_args`, `secret_define_xml_args`.
    XmlFlagsArgs { xml: String, flags: u32 }
    /// `{remote_nonnull_string xml}`: `storage_pool_get_xml_desc_ret`,
    /// `storage_vol_get_xml_desc_ret`, `secret_get_xml_desc_ret`,
    /// `connect_find_storage_pool_sources_ret`.
    XmlRet { xml: String }
    /// `{remote_nonnull_string name}`: `storage_pool_lookup_by_name_args`.
    NameArgs { name: String }
    /// `{remote_uuid uuid}`: `storage_pool_lookup_by_uuid_args`, `secret_lookup_by_uuid_args`.
    UuidArgs { uuid: Uuid }
    /// `{remote_nonnull_string path}`: `storage_vol_lookup_by_path_args`,
    /// `storage_pool_lookup_by_target_path_args`.
    PathArgs { path: String }
    /// `{int maxnames}`: `connect_list_storage_pools_args`,
    /// `connect_list_defined_storage_pools_args`.
    MaxNamesArgs { maxnames: i32 }

    // ----- storage pools -----

    /// `{remote_nonnull_storage_pool pool}`: `storage_pool_{undefine, destroy, get_info,
    /// get_autostart, num_of_volumes, is_active, is_persistent}_args`.
    StoragePoolArgs { pool: NonnullStoragePool }
    /// `{remote_nonnull_storage_pool pool; unsigned int flags}`: `storage_pool_{create,
    /// build, delete, refresh, get_xml_desc}_args`.
    StoragePoolFlagsArgs { pool: NonnullStoragePool, flags: u32 }
    /// `{remote_nonnull_storage_pool pool}` returned: `storage_pool_lookup_by_{name, uuid,
    /// volume, target_path}_ret`, `storage_pool_{create, define}_xml_ret`.
    StoragePoolRet { pool: NonnullStoragePool }
    /// `connect_list_storage_pools_ret` and `connect_list_defined_storage_pools_ret`:
    /// `remote_nonnull_string names<REMOTE_STORAGE_POOL_LIST_MAX>`.
    StoragePoolNamesRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<STORAGE_POOL_LIST_MAX, _, _>")]
        names: Vec<String>,
    }
    /// `remote_connect_find_storage_pool_sources_args`.
    ConnectFindStoragePoolSourcesArgs { r#type: String, src_spec: Option<String>, flags: u32 }
    /// `remote_storage_pool_get_info_ret`: `state` is an `unsigned char` (a
    /// [`storage_pool_state`](crate::protocol::storage_pool_state)), 4 bytes on the wire;
    /// sizes in bytes.
    StoragePoolGetInfoRet { state: u8, capacity: u64, allocation: u64, available: u64 }
    /// `remote_storage_pool_get_autostart_ret`.
    StoragePoolGetAutostartRet { autostart: i32 }
    /// `remote_storage_pool_set_autostart_args`.
    StoragePoolSetAutostartArgs { pool: NonnullStoragePool, autostart: i32 }
    /// `remote_storage_pool_list_volumes_args`.
    StoragePoolListVolumesArgs { pool: NonnullStoragePool, maxnames: i32 }
    /// `remote_storage_pool_list_volumes_ret`:
    /// `remote_nonnull_string names<REMOTE_STORAGE_VOL_LIST_MAX>`.
    StoragePoolListVolumesRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<STORAGE_VOL_LIST_MAX, _, _>")]
        names: Vec<String>,
    }
    /// `remote_storage_pool_is_active_ret`.
    StoragePoolIsActiveRet { active: i32 }
    /// `remote_storage_pool_is_persistent_ret`.
    StoragePoolIsPersistentRet { persistent: i32 }
    /// `{int need_results; unsigned int flags}`: `connect_list_all_storage_pools_args`,
    /// `connect_list_all_secrets_args` (the same layout as
    /// [`ConnectListAllDomainsArgs`](super::ConnectListAllDomainsArgs)).
    ListAllArgs { need_results: i32, flags: u32 }
    /// `remote_connect_list_all_storage_pools_ret`.
    ConnectListAllStoragePoolsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<STORAGE_POOL_LIST_MAX, _, _>")]
        pools: Vec<NonnullStoragePool>,
        ret: u32,
    }
    /// `remote_storage_pool_list_all_volumes_args`.
    StoragePoolListAllVolumesArgs { pool: NonnullStoragePool, need_results: i32, flags: u32 }
    /// `remote_storage_pool_list_all_volumes_ret`.
    StoragePoolListAllVolumesRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<STORAGE_VOL_LIST_MAX, _, _>")]
        vols: Vec<NonnullStorageVol>,
        ret: u32,
    }
    /// `remote_connect_get_storage_pool_capabilities_args`.
    ConnectGetStoragePoolCapabilitiesArgs { flags: u32 }
    /// `remote_connect_get_storage_pool_capabilities_ret`.
    ConnectGetStoragePoolCapabilitiesRet { capabilities: String }

    // ----- storage volumes -----

    /// `{remote_nonnull_storage_vol vol}`: `storage_vol_{get_info, get_path}_args`,
    /// `storage_pool_lookup_by_volume_args`.
    StorageVolArgs { vol: NonnullStorageVol }
    /// `{remote_nonnull_storage_vol vol; unsigned int flags}`: `storage_vol_{delete, wipe,
    /// get_xml_desc, get_info_flags}_args`.
    StorageVolFlagsArgs { vol: NonnullStorageVol, flags: u32 }
    /// `{remote_nonnull_storage_vol vol}` returned: `storage_vol_lookup_by_{name, key,
    /// path}_ret`, `storage_vol_create_xml{,_from}_ret`.
    StorageVolRet { vol: NonnullStorageVol }
    /// `remote_storage_vol_lookup_by_name_args`.
    StorageVolLookupByNameArgs { pool: NonnullStoragePool, name: String }
    /// `remote_storage_vol_lookup_by_key_args`.
    StorageVolLookupByKeyArgs { key: String }
    /// `remote_storage_vol_create_xml_args`.
    StorageVolCreateXmlArgs { pool: NonnullStoragePool, xml: String, flags: u32 }
    /// `remote_storage_vol_create_xml_from_args`: `clonevol` is the volume copied.
    StorageVolCreateXmlFromArgs {
        pool: NonnullStoragePool,
        xml: String,
        clonevol: NonnullStorageVol,
        flags: u32,
    }
    /// `remote_storage_vol_wipe_pattern_args`.
    StorageVolWipePatternArgs { vol: NonnullStorageVol, algorithm: u32, flags: u32 }
    /// `remote_storage_vol_get_info_ret` and `remote_storage_vol_get_info_flags_ret`:
    /// `type` is a (signed) `char`, a
    /// [`storage_vol_type`](crate::protocol::storage_vol_type), 4 bytes on the wire.
    StorageVolGetInfoRet { r#type: i8, capacity: u64, allocation: u64 }
    /// `remote_storage_vol_get_path_ret` (the path is in a field called `name`).
    StorageVolGetPathRet { name: String }
    /// `remote_storage_vol_resize_args`.
    StorageVolResizeArgs { vol: NonnullStorageVol, capacity: u64, flags: u32 }
    /// `remote_storage_vol_upload_args` and `remote_storage_vol_download_args`: the
    /// call opens a stream (upload: client to daemon; download: daemon to client);
    /// `length` 0 means to the end of the volume.
    StorageVolTransferArgs { vol: NonnullStorageVol, offset: u64, length: u64, flags: u32 }

    // ----- secrets -----

    /// `{remote_nonnull_secret secret}`: `secret_undefine_args`.
    SecretArgs { secret: NonnullSecret }
    /// `{remote_nonnull_secret secret; unsigned int flags}`: `secret_get_xml_desc_args`,
    /// `secret_get_value_args`.
    SecretFlagsArgs { secret: NonnullSecret, flags: u32 }
    /// `{remote_nonnull_secret secret}` returned: `secret_lookup_by_{uuid, usage}_ret`,
    /// `secret_define_xml_ret`.
    SecretRet { secret: NonnullSecret }
    /// `remote_connect_list_secrets_args`.
    ConnectListSecretsArgs { maxuuids: i32 }
    /// `remote_connect_list_secrets_ret`: uuid strings,
    /// `remote_nonnull_string uuids<REMOTE_SECRET_LIST_MAX>`.
    ConnectListSecretsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<SECRET_LIST_MAX, _, _>")]
        uuids: Vec<String>,
    }
    /// `remote_connect_list_all_secrets_ret`.
    ConnectListAllSecretsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<SECRET_LIST_MAX, _, _>")]
        secrets: Vec<NonnullSecret>,
        ret: u32,
    }
    /// `remote_secret_lookup_by_usage_args`.
    SecretLookupByUsageArgs { usage_type: i32, usage_id: String }

    // ----- events -----

    /// `remote_connect_storage_pool_event_register_any_args`: `pool` filters to one pool.
    ConnectStoragePoolEventRegisterAnyArgs { event_id: i32, pool: Option<NonnullStoragePool> }
    /// `remote_connect_secret_event_register_any_args`: `secret` filters to one secret.
    ConnectSecretEventRegisterAnyArgs { event_id: i32, secret: Option<NonnullSecret> }
    /// `{int callbackID}`: `connect_{storage_pool, secret}_event_register_any_ret`.
    CallbackIdRet { callback_id: i32 }
    /// `{int callbackID}`: `connect_{storage_pool, secret}_event_deregister_any_args`.
    CallbackIdArgs { callback_id: i32 }
    /// `remote_storage_pool_event_lifecycle_msg`.
    StoragePoolEventLifecycleMsg { callback_id: i32, pool: NonnullStoragePool, event: i32, detail: i32 }
    /// `remote_storage_pool_event_refresh_msg`.
    StoragePoolEventRefreshMsg { callback_id: i32, pool: NonnullStoragePool }
    /// `remote_secret_event_lifecycle_msg`.
    SecretEventLifecycleMsg { callback_id: i32, secret: NonnullSecret, event: i32, detail: i32 }
    /// `remote_secret_event_value_changed_msg`.
    SecretEventValueChangedMsg { callback_id: i32, secret: NonnullSecret }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xdr;
    use serde::de::DeserializeOwned;
    use std::fmt::Debug;

    fn pool() -> NonnullStoragePool {
        NonnullStoragePool {
            name: "default-pool".into(),
            uuid: [0x35; 16],
        }
    }

    fn vol() -> NonnullStorageVol {
        NonnullStorageVol {
            pool: "default-pool".into(),
            name: "v.img".into(),
            key: "/default-pool/v.img".into(),
        }
    }

    fn secret() -> NonnullSecret {
        NonnullSecret {
            uuid: [0xa5; 16],
            usage_type: crate::protocol::secret_usage::VOLUME,
            usage_id: "/var/lib/x.img".into(),
        }
    }

    /// Encodes, decodes (all bytes used) and compares; returns the bytes.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(v: &T) -> Vec<u8> {
        let bytes = xdr::to_vec(v).unwrap();
        assert_eq!(bytes.len() % 4, 0, "{v:?}");
        assert_eq!(&xdr::from_bytes::<T>(&bytes).unwrap(), v);
        // every proper prefix is refused
        for cut in [0, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            if cut < bytes.len() {
                assert!(
                    xdr::from_bytes::<T>(&bytes[..cut]).is_err(),
                    "{v:?} cut {cut}"
                );
            }
        }
        // and so are trailing bytes
        let mut longer = bytes.clone();
        longer.extend([0; 4]);
        assert!(matches!(
            xdr::from_bytes::<T>(&longer),
            Err(xdr::Error::TrailingBytes(4))
        ));
        bytes
    }

    #[test]
    fn every_struct_round_trips() {
        round_trip(&XmlFlagsArgs {
            xml: "<pool/>".into(),
            flags: 1,
        });
        round_trip(&XmlRet { xml: "<x/>".into() });
        round_trip(&NameArgs { name: "p".into() });
        round_trip(&UuidArgs { uuid: [1; 16] });
        round_trip(&PathArgs {
            path: "/var/lib".into(),
        });
        round_trip(&MaxNamesArgs { maxnames: 7 });
        round_trip(&StoragePoolArgs { pool: pool() });
        round_trip(&StoragePoolFlagsArgs {
            pool: pool(),
            flags: 3,
        });
        round_trip(&StoragePoolRet { pool: pool() });
        round_trip(&StoragePoolNamesRet {
            names: vec!["a".into(), "bcdef".into()],
        });
        round_trip(&ConnectFindStoragePoolSourcesArgs {
            r#type: "netfs".into(),
            src_spec: Some("<source/>".into()),
            flags: 0,
        });
        round_trip(&ConnectFindStoragePoolSourcesArgs::default());
        round_trip(&StoragePoolGetInfoRet {
            state: 2,
            capacity: u64::MAX,
            allocation: 1,
            available: 2,
        });
        round_trip(&StoragePoolGetAutostartRet { autostart: 1 });
        round_trip(&StoragePoolSetAutostartArgs {
            pool: pool(),
            autostart: 0,
        });
        round_trip(&StoragePoolListVolumesArgs {
            pool: pool(),
            maxnames: 10,
        });
        round_trip(&StoragePoolListVolumesRet {
            names: vec!["v.img".into()],
        });
        round_trip(&StoragePoolIsActiveRet { active: 1 });
        round_trip(&StoragePoolIsPersistentRet { persistent: 1 });
        round_trip(&ListAllArgs {
            need_results: 1,
            flags: 2,
        });
        round_trip(&ConnectListAllStoragePoolsRet {
            pools: vec![pool(), NonnullStoragePool::default()],
            ret: 2,
        });
        round_trip(&StoragePoolListAllVolumesArgs {
            pool: pool(),
            need_results: 1,
            flags: 0,
        });
        round_trip(&StoragePoolListAllVolumesRet {
            vols: vec![vol()],
            ret: 1,
        });
        round_trip(&ConnectGetStoragePoolCapabilitiesArgs { flags: 0 });
        round_trip(&ConnectGetStoragePoolCapabilitiesRet {
            capabilities: "<storagepoolCapabilities/>".into(),
        });
        round_trip(&StorageVolArgs { vol: vol() });
        round_trip(&StorageVolFlagsArgs {
            vol: vol(),
            flags: 1,
        });
        round_trip(&StorageVolRet { vol: vol() });
        round_trip(&StorageVolLookupByNameArgs {
            pool: pool(),
            name: "v.img".into(),
        });
        round_trip(&StorageVolLookupByKeyArgs {
            key: "/default-pool/v.img".into(),
        });
        round_trip(&StorageVolCreateXmlArgs {
            pool: pool(),
            xml: "<volume/>".into(),
            flags: 1,
        });
        round_trip(&StorageVolCreateXmlFromArgs {
            pool: pool(),
            xml: "<volume/>".into(),
            clonevol: vol(),
            flags: 0,
        });
        round_trip(&StorageVolWipePatternArgs {
            vol: vol(),
            algorithm: 9,
            flags: 0,
        });
        round_trip(&StorageVolGetInfoRet {
            r#type: -1,
            capacity: 1 << 40,
            allocation: 0,
        });
        round_trip(&StorageVolGetPathRet {
            name: "/default-pool/v.img".into(),
        });
        round_trip(&StorageVolResizeArgs {
            vol: vol(),
            capacity: 1 << 30,
            flags: 4,
        });
        round_trip(&StorageVolTransferArgs {
            vol: vol(),
            offset: 512,
            length: 0,
            flags: 1,
        });
        round_trip(&SecretArgs { secret: secret() });
        round_trip(&SecretFlagsArgs {
            secret: secret(),
            flags: 0,
        });
        round_trip(&SecretRet { secret: secret() });
        round_trip(&ConnectListSecretsArgs { maxuuids: 3 });
        round_trip(&ConnectListSecretsRet {
            uuids: vec!["a5a5a5a5-a5a5-a5a5-a5a5-a5a5a5a5a5a5".into()],
        });
        round_trip(&ConnectListAllSecretsRet {
            secrets: vec![secret(), NonnullSecret::default()],
            ret: 2,
        });
        round_trip(&SecretSetValueArgs {
            secret: secret(),
            value: vec![0, 1, 2, 255, 7],
            flags: 0,
        });
        round_trip(&SecretGetValueRet { value: vec![] });
        round_trip(&SecretLookupByUsageArgs {
            usage_type: 1,
            usage_id: "/var/lib/x.img".into(),
        });
        round_trip(&ConnectStoragePoolEventRegisterAnyArgs {
            event_id: 1,
            pool: Some(pool()),
        });
        round_trip(&ConnectStoragePoolEventRegisterAnyArgs::default());
        round_trip(&ConnectSecretEventRegisterAnyArgs {
            event_id: 1,
            secret: Some(secret()),
        });
        round_trip(&ConnectSecretEventRegisterAnyArgs::default());
        round_trip(&CallbackIdRet { callback_id: 5 });
        round_trip(&CallbackIdArgs { callback_id: 5 });
        round_trip(&StoragePoolEventLifecycleMsg {
            callback_id: 1,
            pool: pool(),
            event: 2,
            detail: 0,
        });
        round_trip(&StoragePoolEventRefreshMsg {
            callback_id: 1,
            pool: pool(),
        });
        round_trip(&SecretEventLifecycleMsg {
            callback_id: 1,
            secret: secret(),
            event: 0,
            detail: 0,
        });
        round_trip(&SecretEventValueChangedMsg {
            callback_id: 1,
            secret: secret(),
        });
    }

    /// `remote_storage_pool_get_info_ret {unsigned char state; unsigned hyper capacity;
    /// unsigned hyper allocation; unsigned hyper available}`, by hand.
    #[test]
    fn pool_info_golden() {
        let info = StoragePoolGetInfoRet {
            state: 2,
            capacity: 0x0000_0001_0000_0000,
            allocation: 0x1234,
            available: 0x0102_0304_0506_0708,
        };
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 2,                         // state: unsigned char takes 4 bytes
            0, 0, 0, 1, 0, 0, 0, 0,             // capacity
            0, 0, 0, 0, 0, 0, 0x12, 0x34,       // allocation
            1, 2, 3, 4, 5, 6, 7, 8,             // available
        ];
        assert_eq!(round_trip(&info), expected);
        // an unsigned char over 255 is refused, not truncated
        let mut bad = expected;
        bad[2] = 1;
        assert!(xdr::from_bytes::<StoragePoolGetInfoRet>(&bad).is_err());
    }

    /// `remote_storage_vol_get_info_ret {char type; unsigned hyper capacity;
    /// unsigned hyper allocation}`: a signed char, sign-extended to 4 bytes.
    #[test]
    fn vol_info_golden() {
        let info = StorageVolGetInfoRet {
            r#type: -1,
            capacity: 3,
            allocation: 4,
        };
        #[rustfmt::skip]
        let expected = [
            0xff, 0xff, 0xff, 0xff,
            0, 0, 0, 0, 0, 0, 0, 3,
            0, 0, 0, 0, 0, 0, 0, 4,
        ];
        assert_eq!(round_trip(&info), expected);
    }

    /// `remote_nonnull_storage_vol {pool; name; key}` inside `storage_vol_lookup_by_name_ret`.
    #[test]
    fn vol_handle_golden() {
        let ret = StorageVolRet {
            vol: NonnullStorageVol {
                pool: "p".into(),
                name: "ab".into(),
                key: "/p/ab".into(),
            },
        };
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 1, b'p', 0, 0, 0,
            0, 0, 0, 2, b'a', b'b', 0, 0,
            0, 0, 0, 5, b'/', b'p', b'/', b'a', b'b', 0, 0, 0,
        ];
        assert_eq!(round_trip(&ret), expected);
    }

    /// `remote_nonnull_secret {remote_uuid uuid; int usageType; remote_nonnull_string
    /// usageID}` in `secret_get_value_args`, and the value as a packed `opaque<>`.
    #[test]
    fn secret_golden() {
        let args = SecretFlagsArgs {
            secret: NonnullSecret {
                uuid: core::array::from_fn(|i| i as u8),
                usage_type: 4,
                usage_id: "tls1".into(),
            },
            flags: 0,
        };
        let mut expected: Vec<u8> = (0..16).collect(); // opaque[16]: no length word
        expected.extend([0, 0, 0, 4]); // usageType TLS
        expected.extend([0, 0, 0, 4, b't', b'l', b's', b'1']); // usageID
        expected.extend([0, 0, 0, 0]); // flags
        assert_eq!(round_trip(&args), expected);

        let value = SecretGetValueRet {
            value: b"hunter2".to_vec(),
        };
        assert_eq!(
            round_trip(&value),
            [0, 0, 0, 7, b'h', b'u', b'n', b't', b'e', b'r', b'2', 0]
        );
    }

    /// `remote_connect_list_all_storage_pools_ret {pools<>; unsigned int ret}`.
    #[test]
    fn list_all_pools_golden() {
        let ret = ConnectListAllStoragePoolsRet {
            pools: vec![NonnullStoragePool {
                name: "dp".into(),
                uuid: [9; 16],
            }],
            ret: 1,
        };
        let mut expected = vec![0, 0, 0, 1, 0, 0, 0, 2, b'd', b'p', 0, 0];
        expected.extend([9; 16]);
        expected.extend([0, 0, 0, 1]);
        assert_eq!(round_trip(&ret), expected);
    }

    /// `remote_storage_vol_upload_args {vol; unsigned hyper offset; unsigned hyper
    /// length; unsigned int flags}` and an optional pool in the event registration.
    #[test]
    fn upload_and_register_golden() {
        let args = StorageVolTransferArgs {
            vol: NonnullStorageVol {
                pool: String::new(),
                name: String::new(),
                key: String::new(),
            },
            offset: 1,
            length: 2,
            flags: 1,
        };
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // three empty strings
            0, 0, 0, 0, 0, 0, 0, 1,
            0, 0, 0, 0, 0, 0, 0, 2,
            0, 0, 0, 1,
        ];
        assert_eq!(round_trip(&args), expected);
        let reg = ConnectStoragePoolEventRegisterAnyArgs {
            event_id: 1,
            pool: None,
        };
        assert_eq!(round_trip(&reg), [0, 0, 0, 1, 0, 0, 0, 0]);
    }

    /// A length word one over each `<MAX>` is refused before anything is allocated.
    #[test]
    fn bounded_lists_refuse_over_limit() {
        fn over(max: usize, element: &[u8], tail: &[u8]) -> Vec<u8> {
            let mut b = ((max + 1) as u32).to_be_bytes().to_vec();
            for _ in 0..=max {
                b.extend_from_slice(element);
            }
            b.extend_from_slice(tail);
            b
        }
        fn at(max: usize, element: &[u8], tail: &[u8]) -> Vec<u8> {
            let mut b = (max as u32).to_be_bytes().to_vec();
            for _ in 0..max {
                b.extend_from_slice(element);
            }
            b.extend_from_slice(tail);
            b
        }
        fn refused<T: DeserializeOwned + Debug>(bytes: &[u8], max: usize) {
            match xdr::from_bytes::<T>(bytes) {
                Err(xdr::Error::InvalidLength { len, .. }) => assert_eq!(len, max + 1),
                other => panic!("expected a length error, got {other:?}"),
            }
        }
        let empty_string = [0u8; 4];
        let empty_pool = [0u8; 20]; // name "" + uuid
        let empty_vol = [0u8; 12];
        let empty_secret = [0u8; 24]; // uuid + usageType + usageID ""
        let ret = [0u8; 4];

        refused::<StoragePoolNamesRet>(&over(STORAGE_POOL_LIST_MAX, &empty_string, &[]), 16_384);
        assert!(
            xdr::from_bytes::<StoragePoolNamesRet>(&at(STORAGE_POOL_LIST_MAX, &empty_string, &[]))
                .is_ok()
        );
        refused::<StoragePoolListVolumesRet>(
            &over(STORAGE_VOL_LIST_MAX, &empty_string, &[]),
            16_384,
        );
        refused::<ConnectListAllStoragePoolsRet>(
            &over(STORAGE_POOL_LIST_MAX, &empty_pool, &ret),
            16_384,
        );
        assert_eq!(
            xdr::from_bytes::<ConnectListAllStoragePoolsRet>(&at(
                STORAGE_POOL_LIST_MAX,
                &empty_pool,
                &ret
            ))
            .unwrap()
            .pools
            .len(),
            STORAGE_POOL_LIST_MAX
        );
        refused::<StoragePoolListAllVolumesRet>(
            &over(STORAGE_VOL_LIST_MAX, &empty_vol, &ret),
            16_384,
        );
        refused::<ConnectListSecretsRet>(&over(SECRET_LIST_MAX, &empty_string, &[]), 16_384);
        refused::<ConnectListAllSecretsRet>(&over(SECRET_LIST_MAX, &empty_secret, &ret), 16_384);
        // opaque value<65536>: 65537 bytes refused, 65536 accepted
        refused::<SecretGetValueRet>(&over(SECRET_VALUE_MAX, &[7], &[0, 0, 0]), 65_536);
        let value = at(SECRET_VALUE_MAX, &[7], &[]);
        assert_eq!(
            xdr::from_bytes::<SecretGetValueRet>(&value)
                .unwrap()
                .value
                .len(),
            SECRET_VALUE_MAX
        );
        let mut set = vec![0u8; 24];
        set.extend(over(SECRET_VALUE_MAX, &[7], &[0, 0, 0]));
        set.extend([0, 0, 0, 0]);
        refused::<SecretSetValueArgs>(&set, 65_536);
        // a huge count with no bytes behind it is refused without allocating
        let mut huge = vec![0xff, 0xff, 0xff, 0xf0];
        huge.extend(ret);
        assert!(xdr::from_bytes::<ConnectListAllStoragePoolsRet>(&huge).is_err());
        assert!(xdr::from_bytes::<SecretGetValueRet>(&huge).is_err());
    }
}

/// `remote_secret_set_value_args`: `opaque value<REMOTE_SECRET_VALUE_MAX>`. Its `Debug`
/// shows the value's length only, so a secret never reaches a log through `{:?}`.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SecretSetValueArgs {
    pub secret: NonnullSecret,
    #[serde(deserialize_with = "crate::xdr::bounded::<SECRET_VALUE_MAX, _, _>")]
    pub value: Vec<u8>,
    pub flags: u32,
}

impl std::fmt::Debug for SecretSetValueArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSetValueArgs")
            .field("secret", &self.secret)
            .field(
                "value",
                &format_args!("<{} bytes hidden>", self.value.len()),
            )
            .field("flags", &self.flags)
            .finish()
    }
}

/// `remote_secret_get_value_ret`: `opaque value<REMOTE_SECRET_VALUE_MAX>`, with a `Debug`
/// that hides the value.
#[derive(Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SecretGetValueRet {
    #[serde(deserialize_with = "crate::xdr::bounded::<SECRET_VALUE_MAX, _, _>")]
    pub value: Vec<u8>,
}

impl std::fmt::Debug for SecretGetValueRet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretGetValueRet")
            .field(
                "value",
                &format_args!("<{} bytes hidden>", self.value.len()),
            )
            .finish()
    }
}

#[cfg(test)]
mod redaction {
    use super::*;

    #[test]
    fn secret_values_never_show_in_debug() {
        let a = SecretSetValueArgs {
            value: b"hunter2".to_vec(),
            ..Default::default()
        };
        let r = SecretGetValueRet {
            value: b"hunter2".to_vec(),
        };
        for text in [format!("{a:?}"), format!("{r:?}")] {
            assert!(!text.contains("hunter2") && !text.contains("104"), "{text}");
            assert!(text.contains("<7 bytes hidden>"), "{text}");
        }
    }
}
