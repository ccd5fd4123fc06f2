//! The network contract, per forward mode (no network is started).

use crate::{Runner, describe, host_box, res, well_formed};
use rvirt_host::PluginManifest;
use rvirt_plugin_api::{
    self as api, NetworkBackendBox, PluginMod_Ref, abi_stable::std_types::RStr,
};
use std::path::Path;

fn open(
    module: PluginMod_Ref,
    mode: &str,
    root: &Path,
) -> Result<NetworkBackendBox, api::PluginError> {
    let Some(facet) = module.network().flatten() else {
        return Err(api::PluginError::no_support("network facet"));
    };
    res((facet.open())(RStr::from_str(mode), host_box(root, None)))
}

pub(crate) fn checks(r: &mut Runner<'_>, module: PluginMod_Ref, m: &PluginManifest, root: &Path) {
    r.check("network.facet", || {
        let facet = module
            .network()
            .flatten()
            .ok_or("the manifest lists forward modes but the network facet is absent")?;
        let v = facet.api();
        if v.major != api::NETWORK_FACET_VERSION.major {
            return Err(format!(
                "network facet {}.{}, this host serves 1.x",
                v.major, v.minor
            ));
        }
        Ok(())
    });
    r.check("network.open.unlisted", || {
        match open(module, "tck-unlisted-mode", root) {
            Ok(_) => Err("opening a forward mode the plugin does not list succeeded".into()),
            Err(e) => well_formed("open(tck-unlisted-mode)", &e),
        }
    });
    for mode in &m.forward_modes {
        let mut backend = None;
        if !r.check(&format!("network.open.{mode}"), || {
            let b =
                open(module, mode, root).map_err(|e| format!("open({mode}): {}", describe(&e)))?;
            if b.forward_mode().as_str() != mode {
                return Err(format!(
                    "the backend says forward mode '{}'",
                    b.forward_mode()
                ));
            }
            backend = Some(b);
            Ok(())
        }) {
            continue;
        }
        let Some(b) = backend else { continue };
        let state = root.join(format!("net-{mode}"));
        let _ = std::fs::create_dir_all(&state);
        let st = state.display().to_string();
        r.check(&format!("network.bad-xml.{mode}"), || {
            match res(b.start_network(RStr::from_str("<network"), RStr::from_str(&st))) {
                Ok(_) => Err("virNetworkCreate succeeded on malformed XML".into()),
                Err(e) => well_formed("virNetworkCreate(\"<network\")", &e),
            }
        });
        r.check(&format!("network.errors.{mode}"), || {
            let net = format!(
                "<network>\n  <name>tck-absent-{mode}</name>\n  <uuid>{}</uuid>\n  <forward mode='{mode}'/>\n</network>\n",
                uuid::Uuid::new_v4()
            );
            let n = RStr::from_str(&net);
            let answers = [
                ("virNetworkIsActive", res(b.check_network(n, RStr::from_str(&st))).err()),
                ("virNetworkGetDHCPLeases", res(b.dhcp_leases(n, RStr::from_str(""))).err()),
            ];
            for (what, e) in answers {
                if let Some(e) = e {
                    well_formed(what, &e)?;
                    if e.is_no_support() && e.domain != api::ErrorDomain::Network as i32 {
                        return Err(format!(
                            "{what}: no-support answered in error domain {} (expected VIR_FROM_NETWORK, 19)",
                            e.domain
                        ));
                    }
                }
            }
            Ok(())
        });
    }
}
