//! Argument and return types of the migration procedures of libvirt's version 3 protocol
//! with typed parameters, of job abort and of screenshots, from `remote_protocol.x`.

use crate::protocol::{
    DOMAIN_MIGRATE_PARAM_LIST_MAX, MIGRATE_COOKIE_MAX, NonnullDomain, TypedParam,
};
use serde::{Deserialize, Serialize};

xdr_structs! {
    /// `remote_domain_migrate_begin3_params_args`.
    DomainMigrateBegin3ParamsArgs {
        dom: NonnullDomain,
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_MIGRATE_PARAM_LIST_MAX, _, _>")]
        params: Vec<TypedParam>,
        flags: u32,
    }
    /// `remote_domain_migrate_begin3_params_ret`.
    DomainMigrateBegin3ParamsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<MIGRATE_COOKIE_MAX, _, _>")]
        cookie_out: Vec<u8>,
        xml: String,
    }
    /// `remote_domain_migrate_perform3_params_args`.
    DomainMigratePerform3ParamsArgs {
        dom: NonnullDomain,
        dconnuri: Option<String>,
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_MIGRATE_PARAM_LIST_MAX, _, _>")]
        params: Vec<TypedParam>,
        #[serde(deserialize_with = "crate::xdr::bounded::<MIGRATE_COOKIE_MAX, _, _>")]
        cookie_in: Vec<u8>,
        flags: u32,
    }
    /// `remote_domain_migrate_perform3_params_ret`.
    DomainMigratePerform3ParamsRet {
        #[serde(deserialize_with = "crate::xdr::bounded::<MIGRATE_COOKIE_MAX, _, _>")]
        cookie_out: Vec<u8>,
    }
    /// `remote_domain_migrate_finish3_params_args`.
    DomainMigrateFinish3ParamsArgs {
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_MIGRATE_PARAM_LIST_MAX, _, _>")]
        params: Vec<TypedParam>,
        #[serde(deserialize_with = "crate::xdr::bounded::<MIGRATE_COOKIE_MAX, _, _>")]
        cookie_in: Vec<u8>,
        flags: u32,
        cancelled: i32,
    }
    /// `remote_domain_migrate_finish3_params_ret`.
    DomainMigrateFinish3ParamsRet {
        dom: NonnullDomain,
        #[serde(deserialize_with = "crate::xdr::bounded::<MIGRATE_COOKIE_MAX, _, _>")]
        cookie_out: Vec<u8>,
    }
    /// `remote_domain_screenshot_args`: the image follows as a stream.
    DomainScreenshotArgs { dom: NonnullDomain, screen: u32, flags: u32 }
    /// `remote_domain_screenshot_ret`: the image's MIME type.
    DomainScreenshotRet { mime: Option<String> }
    /// `remote_domain_migrate_confirm3_params_args`.
    DomainMigrateConfirm3ParamsArgs {
        dom: NonnullDomain,
        #[serde(deserialize_with = "crate::xdr::bounded::<DOMAIN_MIGRATE_PARAM_LIST_MAX, _, _>")]
        params: Vec<TypedParam>,
        #[serde(deserialize_with = "crate::xdr::bounded::<MIGRATE_COOKIE_MAX, _, _>")]
        cookie_in: Vec<u8>,
        flags: u32,
        cancelled: i32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TypedParamValue;
    use crate::xdr;

    #[test]
    fn perform3_params_layout() {
        let args = DomainMigratePerform3ParamsArgs {
            dom: NonnullDomain {
                name: "d".into(),
                uuid: [7; 16],
                id: 3,
            },
            dconnuri: None,
            params: vec![TypedParam {
                field: "migrate_uri".into(),
                value: TypedParamValue::String("tcp:127.0.0.1:49152".into()),
            }],
            cookie_in: vec![1, 2, 3],
            flags: 1,
        };
        let bytes = xdr::to_vec(&args).unwrap();
        // name (4 + 4), uuid 16, id 4, absent dconnuri 4, one param: count 4, field
        // 4 + 12, type 4, string 4 + 20, cookie 4 + 4 (padded), flags 4
        assert_eq!(bytes.len(), 8 + 16 + 4 + 4 + 4 + 16 + 4 + 24 + 8 + 4);
        assert_eq!(
            xdr::from_bytes::<DomainMigratePerform3ParamsArgs>(&bytes).unwrap(),
            args
        );
    }
}
