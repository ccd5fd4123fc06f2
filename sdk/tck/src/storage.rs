//! The storage contract, per pool type.

use crate::{Runner, describe, host_box, res, well_formed};
use rvirt_host::PluginManifest;
use rvirt_plugin_api::{
    self as api, PluginMod_Ref, StorageBackendBox,
    abi_stable::std_types::{RResult, RStr},
};
use std::path::Path;

fn open(
    module: PluginMod_Ref,
    pool_type: &str,
    root: &Path,
) -> Result<StorageBackendBox, api::PluginError> {
    let Some(facet) = module.storage().flatten() else {
        return Err(api::PluginError::no_support("storage facet"));
    };
    res((facet.open())(
        RStr::from_str(pool_type),
        host_box(root, None),
    ))
}

/// A no-support answer must be in the storage error domain and name the API.
fn no_support_ok(what: &str, e: &api::PluginError) -> Result<(), String> {
    if e.is_no_support() {
        if e.domain != api::ErrorDomain::Storage as i32 {
            return Err(format!(
                "{what}: no-support answered in error domain {} (expected VIR_FROM_STORAGE, 18)",
                e.domain
            ));
        }
        if !e.message.contains("vir") {
            return Err(format!(
                "{what}: no-support does not name the libvirt API: {}",
                e.message
            ));
        }
    }
    Ok(())
}

fn err_of<T>(r: RResult<T, api::PluginError>) -> Option<api::PluginError> {
    r.into_result().err()
}

pub(crate) fn checks(r: &mut Runner<'_>, module: PluginMod_Ref, m: &PluginManifest, root: &Path) {
    r.check("storage.facet", || {
        let facet = module
            .storage()
            .flatten()
            .ok_or("the manifest lists pool types but the storage facet is absent")?;
        let v = facet.api();
        if v.major != api::STORAGE_FACET_VERSION.major {
            return Err(format!(
                "storage facet {}.{}, this host serves 1.x",
                v.major, v.minor
            ));
        }
        Ok(())
    });
    r.check("storage.open.unlisted", || {
        match open(module, "tck-unlisted-type", root) {
            Ok(_) => Err("opening a pool type the plugin does not list succeeded".into()),
            Err(e) => well_formed("open(tck-unlisted-type)", &e),
        }
    });
    for t in &m.pool_types {
        let mut backend = None;
        if !r.check(&format!("storage.open.{t}"), || {
            let b = open(module, t, root).map_err(|e| format!("open({t}): {}", describe(&e)))?;
            if b.pool_type().as_str() != t {
                return Err(format!("the backend says pool type '{}'", b.pool_type()));
            }
            backend = Some(b);
            Ok(())
        }) {
            continue;
        }
        let Some(b) = backend else { continue };
        let dir = root.join(format!("pool-{t}"));
        let _ = std::fs::create_dir_all(&dir);
        let pool = format!(
            "<pool type='{t}'>\n  <name>tck-{t}</name>\n  <uuid>{}</uuid>\n  <source>\n    <dir path='{}'/>\n  </source>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
            uuid::Uuid::new_v4(),
            dir.display(),
            dir.display()
        );
        let vol = "<volume>\n  <name>tck.img</name>\n  <capacity unit='bytes'>1048576</capacity>\n  <allocation unit='bytes'>0</allocation>\n  <target>\n    <format type='raw'/>\n  </target>\n</volume>\n";
        r.check(&format!("storage.bad-xml.{t}"), || {
            for (what, e) in [
                (
                    "virStoragePoolRefresh(\"<pool\")",
                    err_of(b.refresh_pool(RStr::from_str("<pool"))),
                ),
                (
                    "virStorageVolCreateXML(\"<volume\")",
                    err_of(b.create_volume(RStr::from_str(&pool), RStr::from_str("<volume"), 0)),
                ),
                (
                    "virStorageVolDelete(\"\")",
                    err_of(b.delete_volume(RStr::from_str(""), RStr::from_str(""), 0)),
                ),
            ] {
                match e {
                    None => return Err(format!("{what} succeeded on malformed XML")),
                    Some(e) => well_formed(what, &e)?,
                }
            }
            Ok(())
        });
        r.check(&format!("storage.errors.{t}"), || {
            let answers = [
                (
                    "virStorageVolResize",
                    err_of(b.resize_volume(RStr::from_str(&pool), RStr::from_str(vol), 1 << 30, 0)),
                ),
                (
                    "virStorageVolWipePattern",
                    err_of(b.wipe_volume(RStr::from_str(&pool), RStr::from_str(vol), 0, 0)),
                ),
                (
                    "virConnectFindStoragePoolSources",
                    err_of(b.find_pool_sources(RStr::from_str("<source/>"), 0)),
                ),
                (
                    "virStorageVolGetXMLDesc",
                    err_of(b.refresh_volume(RStr::from_str(&pool), RStr::from_str(vol))),
                ),
            ];
            for (what, e) in answers {
                if let Some(e) = e {
                    well_formed(what, &e)?;
                    no_support_ok(what, &e)?;
                }
            }
            Ok(())
        });
        r.check_or_skip(&format!("storage.lifecycle.{t}"), || {
            let p = RStr::from_str(&pool);
            if let Err(e) = res(b.build_pool(p, 0)).and_then(|_| res(b.start_pool(p))) {
                well_formed("build/start", &e)?;
                return Ok(Some(format!(
                    "the backend cannot run a pool in a scratch directory here: {}",
                    describe(&e)
                )));
            }
            let created = res(b.create_volume(p, RStr::from_str(vol), 0));
            let outcome = (|| {
                let created = match created {
                    Ok(x) => x,
                    Err(e) if e.is_no_support() => {
                        no_support_ok("virStorageVolCreateXML", &e)?;
                        return Ok(Some("the backend creates no volumes".to_string()));
                    }
                    Err(e) => return Err(format!("virStorageVolCreateXML: {}", describe(&e))),
                };
                let v = rvirt_xml::Element::parse(created.as_str())
                    .map_err(|e| format!("the created volume's XML does not parse: {e}"))?;
                if v.name() != "volume" {
                    return Err(format!("virStorageVolCreateXML answered <{}>", v.name()));
                }
                let refresh = res(b.refresh_pool(p))
                    .map_err(|e| format!("virStoragePoolRefresh: {}", describe(&e)))?;
                if !refresh.volumes.iter().any(|x| x.contains("tck.img")) {
                    return Err("a created volume is missing from the refresh".into());
                }
                if refresh.capacity < refresh.allocation {
                    return Err(format!(
                        "the refresh reports allocation {} above capacity {}",
                        refresh.allocation, refresh.capacity
                    ));
                }
                res(b.delete_volume(p, RStr::from_str(vol), 0))
                    .map_err(|e| format!("virStorageVolDelete: {}", describe(&e)))?;
                let refresh = res(b.refresh_pool(p))
                    .map_err(|e| format!("virStoragePoolRefresh: {}", describe(&e)))?;
                if refresh.volumes.iter().any(|x| x.contains("tck.img")) {
                    return Err("a deleted volume is still reported".into());
                }
                Ok(None)
            })();
            let _ = b.stop_pool(p);
            outcome
        });
    }
}
