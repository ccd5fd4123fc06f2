//! libvirt's `<bandwidth>` element (of an interface, a network, a port group or a network
//! port): an inbound and an outbound rate, in kilobytes per second (`average`, `peak`,
//! `floor`) and kilobytes (`burst`). Inbound is the traffic the guest receives.
//!
//! The seven typed parameters of `virNetworkPortGetParameters`/`SetParameters`
//! (`inbound.average`, ..., `outbound.burst`) read and change the same values.

use crate::error::XmlError;
use crate::tree::Element;

/// One direction's limits; 0 is "not set".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rate {
    /// Average rate, kB/s.
    pub average: u64,
    /// Peak rate, kB/s.
    pub peak: u64,
    /// Burst size at peak, kB.
    pub burst: u64,
    /// Guaranteed minimum, kB/s (inbound only).
    pub floor: u64,
}

impl Rate {
    fn is_empty(&self) -> bool {
        *self == Rate::default()
    }
}

/// A `<bandwidth>` element.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bandwidth {
    /// `<inbound>`: traffic to the guest.
    pub inbound: Rate,
    /// `<outbound>`: traffic from the guest.
    pub outbound: Rate,
}

/// The typed parameter names, in libvirt's order.
pub const PARAMS: [&str; 7] = [
    "inbound.average",
    "inbound.peak",
    "inbound.burst",
    "inbound.floor",
    "outbound.average",
    "outbound.peak",
    "outbound.burst",
];

fn rate(e: &Element, path: &str, inbound: bool) -> Result<Rate, XmlError> {
    let num = |attr: &str| -> Result<u64, XmlError> {
        match e.attr(attr) {
            None => Ok(0),
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                XmlError::invalid(
                    format!("{path}/@{attr}"),
                    format!("'{v}' is not a non-negative integer"),
                )
            }),
        }
    };
    let r = Rate {
        average: num("average")?,
        peak: num("peak")?,
        burst: num("burst")?,
        floor: num("floor")?,
    };
    if !inbound && e.attr("floor").is_some() {
        return Err(XmlError::invalid(
            format!("{path}/@floor"),
            "floor is only supported for inbound traffic",
        ));
    }
    if r.average == 0 && r.floor == 0 && !r.is_empty() {
        return Err(XmlError::invalid(
            format!("{path}/@average"),
            "average is required (and not 0) when peak or burst are set",
        ));
    }
    Ok(r)
}

impl Bandwidth {
    /// Reads a `<bandwidth>` element; `path` names it in errors.
    pub fn from_element(e: &Element, path: &str) -> Result<Bandwidth, XmlError> {
        let mut b = Bandwidth::default();
        for (name, inbound) in [("inbound", true), ("outbound", false)] {
            let mut seen = e.children_named(name);
            if let Some(c) = seen.next() {
                let r = rate(c, &format!("{path}/{name}"), inbound)?;
                if inbound {
                    b.inbound = r;
                } else {
                    b.outbound = r;
                }
            }
            if seen.next().is_some() {
                return Err(XmlError::invalid(
                    format!("{path}/{name}"),
                    format!("only one <{name}> is allowed"),
                ));
            }
        }
        Ok(b)
    }

    /// The `<bandwidth>` child of `parent`, if any.
    pub fn of(parent: &Element, parent_path: &str) -> Result<Option<Bandwidth>, XmlError> {
        parent
            .child("bandwidth")
            .map(|e| Bandwidth::from_element(e, &format!("{parent_path}/bandwidth")))
            .transpose()
    }

    /// No limit in either direction.
    pub fn is_empty(&self) -> bool {
        self.inbound.is_empty() && self.outbound.is_empty()
    }

    /// The element, `None` when empty.
    pub fn to_element(&self) -> Option<Element> {
        if self.is_empty() {
            return None;
        }
        let mut b = Element::new("bandwidth");
        for (name, r) in [("inbound", &self.inbound), ("outbound", &self.outbound)] {
            if r.is_empty() {
                continue;
            }
            let mut e = Element::new(name);
            for (attr, v) in [
                ("average", r.average),
                ("peak", r.peak),
                ("burst", r.burst),
                ("floor", r.floor),
            ] {
                if v != 0 {
                    e.set_attr(attr, &v.to_string());
                }
            }
            b.push(e);
        }
        Some(b)
    }

    /// Replaces (or removes, when empty) the `<bandwidth>` child of `parent`.
    pub fn store_in(&self, parent: &mut Element) {
        parent.remove_children(|c| c.name() == "bandwidth");
        if let Some(e) = self.to_element() {
            parent.push(e);
        }
    }

    fn slot(&mut self, param: &str) -> Option<&mut u64> {
        Some(match param {
            "inbound.average" => &mut self.inbound.average,
            "inbound.peak" => &mut self.inbound.peak,
            "inbound.burst" => &mut self.inbound.burst,
            "inbound.floor" => &mut self.inbound.floor,
            "outbound.average" => &mut self.outbound.average,
            "outbound.peak" => &mut self.outbound.peak,
            "outbound.burst" => &mut self.outbound.burst,
            _ => return None,
        })
    }

    /// The value of a typed parameter (one of [`PARAMS`]).
    pub fn get(&self, param: &str) -> Option<u64> {
        let mut c = *self;
        c.slot(param).map(|v| *v)
    }

    /// Sets a typed parameter (0 clears it); an unknown name is an error naming it.
    pub fn set(&mut self, param: &str, value: u64) -> Result<(), XmlError> {
        let slot = self.slot(param).ok_or_else(|| {
            XmlError::invalid(
                format!("parameter '{param}'"),
                format!("unknown bandwidth parameter (known: {})", PARAMS.join(", ")),
            )
        })?;
        *slot = value;
        Ok(())
    }

    /// Checks the rule [`Bandwidth::from_element`] applies to text: a direction with
    /// peak or burst needs an average.
    pub fn validate(&self, path: &str) -> Result<(), XmlError> {
        match self.to_element() {
            None => Ok(()),
            Some(e) => Bandwidth::from_element(&e, path).map(drop),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_write_and_parameters() {
        let e = Element::parse(
            "<bandwidth><inbound average='1000' peak='5000' burst='1024'/><outbound average='128'/></bandwidth>",
        )
        .unwrap();
        let mut b = Bandwidth::from_element(&e, "networkport/bandwidth").unwrap();
        assert_eq!(b.inbound.peak, 5000);
        assert_eq!(b.get("outbound.average"), Some(128));
        assert_eq!(b.get("outbound.burst"), Some(0));
        assert_eq!(
            b.to_element().unwrap().to_xml_string(),
            "<bandwidth>\n  <inbound average='1000' peak='5000' burst='1024'/>\n  <outbound average='128'/>\n</bandwidth>\n"
        );
        b.set("outbound.average", 0).unwrap();
        assert!(b.to_element().unwrap().child("outbound").is_none());
        let err = b.set("inbound.nope", 1).unwrap_err().to_string();
        assert!(err.contains("parameter 'inbound.nope'"), "{err}");
        b.set("inbound.average", 0).unwrap();
        let err = b.validate("networkport/bandwidth").unwrap_err().to_string();
        assert!(
            err.contains("networkport/bandwidth/inbound/@average"),
            "{err}"
        );
        b = Bandwidth::default();
        assert!(b.is_empty() && b.to_element().is_none());
    }

    #[test]
    fn bad_values_name_the_attribute() {
        for (xml, path) in [
            (
                "<bandwidth><inbound average='x'/></bandwidth>",
                "b/inbound/@average",
            ),
            (
                "<bandwidth><outbound average='1' floor='2'/></bandwidth>",
                "b/outbound/@floor",
            ),
            (
                "<bandwidth><inbound peak='2'/></bandwidth>",
                "b/inbound/@average",
            ),
            (
                "<bandwidth><inbound average='-1'/></bandwidth>",
                "b/inbound/@average",
            ),
            (
                "<bandwidth><inbound average='1'/><inbound average='2'/></bandwidth>",
                "b/inbound",
            ),
        ] {
            let e = Element::parse(xml).unwrap();
            let err = Bandwidth::from_element(&e, "b").unwrap_err();
            assert_eq!(err.path(), path, "{xml}: {err}");
        }
        let floor_only = Element::parse("<bandwidth><inbound floor='100'/></bandwidth>").unwrap();
        assert_eq!(
            Bandwidth::from_element(&floor_only, "b")
                .unwrap()
                .inbound
                .floor,
            100
        );
    }
}
