//! Save images and managed save, as libvirt's test driver keeps them: a saved domain's
//! definition goes to a file (the test driver has no guest memory to write) and the
//! domain stops with reason "saved"; a restore starts it again from the file, a managed
//! save is a mark on the domain that its next start resumes from.
//!
//! The image format is rvirt's own and versioned: the magic `RvirtTestSave\0\0\0`
//! (16 bytes), the format version (u32, little-endian), the `VIR_DOMAIN_*` state the
//! domain had (u32: running or paused), the XML length (u32) and the domain XML.

use super::{Dom, Node, test_err};
use rvirt_sdk::abi::{DomainRef, ErrorCode, ErrorDomain, PluginError, Uuid, event, state};
use rvirt_sdk::util::operation_invalid;
use std::io::Write;
use std::path::Path;

/// The first 16 bytes of a test save image.
const MAGIC: &[u8; 16] = b"RvirtTestSave\0\0\0";
/// The format version this plugin writes and reads.
const VERSION: u32 = 1;
/// `VIR_DOMAIN_SHUTOFF_SAVED`.
const SHUTOFF_SAVED: i32 = 5;
/// `VIR_DOMAIN_EVENT_STOPPED_SAVED`.
const STOPPED_SAVED: i32 = 4;
/// `VIR_DOMAIN_RUNNING_RESTORED`.
const RUNNING_RESTORED: i32 = 3;
/// `VIR_DOMAIN_EVENT_STARTED_RESTORED`.
const STARTED_RESTORED: i32 = 2;
/// `VIR_DOMAIN_SAVE_RUNNING`: resume after the restore whatever the saved state.
pub const SAVE_RUNNING: u32 = 2;
/// `VIR_DOMAIN_SAVE_PAUSED`: stay paused after the restore.
pub const SAVE_PAUSED: u32 = 4;

/// What a save image holds.
pub struct Image {
    pub state: i32,
    pub xml: String,
}

impl Image {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(28 + self.xml.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&u32::try_from(self.state).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(
            &u32::try_from(self.xml.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(self.xml.as_bytes());
        out
    }

    fn decode(path: &str, bytes: &[u8]) -> Result<Image, PluginError> {
        let bad = |what: &str| {
            test_err(
                ErrorCode::OperationFailed,
                format!("operation failed: '{path}' is not a test driver save image: {what}"),
            )
        };
        if bytes.len() < 28 || &bytes[..16] != MAGIC {
            return Err(bad("no save image header"));
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(16);
        if version != VERSION {
            return Err(bad(&format!(
                "format version {version}, this driver reads {VERSION}"
            )));
        }
        let state = i32::try_from(word(20)).unwrap_or(state::RUNNING);
        let len = usize::try_from(word(24)).unwrap_or(usize::MAX);
        let xml = bytes
            .get(28..28usize.saturating_add(len))
            .ok_or_else(|| bad("truncated domain XML"))?;
        let xml = String::from_utf8(xml.to_vec()).map_err(|_| bad("domain XML is not UTF-8"))?;
        Ok(Image { state, xml })
    }

    pub fn read(path: &str) -> Result<Image, PluginError> {
        let bytes = std::fs::read(path).map_err(|e| {
            test_err(
                ErrorCode::OperationFailed,
                format!("operation failed: cannot read domain image '{path}': {e}"),
            )
        })?;
        Self::decode(path, &bytes)
    }

    /// Writes the image next to `path` and renames it into place, synced.
    pub fn write(&self, path: &str) -> Result<(), PluginError> {
        let fail = |e: std::io::Error| {
            test_err(
                ErrorCode::OperationFailed,
                format!("operation failed: saving domain to '{path}' failed: {e}"),
            )
        };
        let target = Path::new(path);
        let tmp = target.with_extension("rvirt-tmp");
        let mut f = std::fs::File::create(&tmp).map_err(fail)?;
        f.write_all(&self.encode()).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        drop(f);
        std::fs::rename(&tmp, target).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            fail(e)
        })
    }
}

impl Node {
    /// Stops an active domain with reason "saved" (a transient one goes away).
    fn stop_saved(&mut self, i: usize) {
        let d = &mut self.doms[i];
        d.state = state::SHUTOFF;
        d.reason = SHUTOFF_SAVED;
        let r = d.reference();
        d.id = None;
        d.started = None;
        if let Some(next) = d.next_def.take() {
            d.def = next;
        }
        for (_, s) in &self.sinks {
            s.domain_lifecycle(r.clone(), event::STOPPED, STOPPED_SAVED);
        }
        if !self.doms[i].persistent {
            self.remove(i);
        }
    }

    /// Starts the domain at `i` as restored: running, or paused when `paused`.
    fn start_restored(&mut self, i: usize, paused: bool) {
        let id = self.next_id;
        self.next_id += 1;
        let d = &mut self.doms[i];
        d.id = Some(id);
        d.started = Some(std::time::Instant::now());
        if paused {
            d.state = state::PAUSED;
            d.reason = 1; // user
        } else {
            d.state = state::RUNNING;
            d.reason = RUNNING_RESTORED;
        }
        let d = &self.doms[i];
        self.emit(d, event::STARTED, STARTED_RESTORED);
        if paused {
            self.emit(d, event::SUSPENDED, 0);
        }
    }

    fn active_index(&self, uuid: Uuid) -> Result<usize, PluginError> {
        let i = self.index(uuid)?;
        if !self.doms[i].is_active() {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "domain is not running",
            ));
        }
        Ok(i)
    }

    /// The definition a restore uses: `dxml` when given (it must name the same domain),
    /// else the image's.
    fn image_def(&self, image: &Image, dxml: &str) -> Result<rvirt_xml::Domain, PluginError> {
        let saved = Self::parse(&image.xml)?;
        if dxml.is_empty() {
            return Ok(saved);
        }
        let def = Self::parse(dxml)?;
        if def.uuid() != saved.uuid() || def.name() != saved.name() {
            return Err(test_err(
                ErrorCode::InvalidArg,
                format!(
                    "invalid argument: the XML names domain '{}' where the image holds '{}'",
                    def.name(),
                    saved.name()
                ),
            ));
        }
        Ok(def)
    }

    /// `virDomainSaveFlags`.
    pub fn save(
        &mut self,
        uuid: Uuid,
        path: &str,
        dxml: &str,
        flags: u32,
    ) -> Result<(), PluginError> {
        let i = self.active_index(uuid)?;
        let d = &self.doms[i];
        let xml = if dxml.is_empty() {
            d.xml(1) // secure: the image restores the domain with its secrets
        } else {
            let def = Self::parse(dxml)?;
            if def.uuid() != d.def.uuid() || def.name() != d.def.name() {
                return Err(test_err(
                    ErrorCode::InvalidArg,
                    format!(
                        "invalid argument: the XML names domain '{}', not '{}'",
                        def.name(),
                        d.def.name()
                    ),
                ));
            }
            dxml.to_string()
        };
        let saved_state = save_state(d, flags);
        Image {
            state: saved_state,
            xml,
        }
        .write(path)?;
        self.stop_saved(i);
        Ok(())
    }

    /// `virDomainRestoreFlags`.
    pub fn restore(
        &mut self,
        path: &str,
        dxml: &str,
        flags: u32,
    ) -> Result<DomainRef, PluginError> {
        let image = Image::read(path)?;
        let def = self.image_def(&image, dxml)?;
        let i = match self.check_new(&def)? {
            Some(i) => {
                if self.doms[i].is_active() {
                    return Err(test_err(
                        ErrorCode::OperationInvalid,
                        format!(
                            "requested operation is not valid: domain '{}' is already active",
                            def.name()
                        ),
                    ));
                }
                let d = &mut self.doms[i];
                let persistent_def = std::mem::replace(&mut d.def, def);
                d.next_def = Some(persistent_def);
                i
            }
            None => self.push(Dom::new(def, false)),
        };
        let paused = restore_paused(image.state, flags);
        self.start_restored(i, paused);
        Ok(self.doms[i].reference())
    }

    /// `virDomainSaveImageGetXMLDesc`.
    pub fn save_image_xml(&self, path: &str) -> Result<String, PluginError> {
        Image::read(path).map(|i| i.xml)
    }

    /// `virDomainSaveImageDefineXML`: the image's domain XML replaced (same domain).
    pub fn save_image_define(&self, path: &str, dxml: &str, flags: u32) -> Result<(), PluginError> {
        let mut image = Image::read(path)?;
        self.image_def(&image, dxml)?;
        image.xml = dxml.to_string();
        if flags & SAVE_RUNNING != 0 {
            image.state = state::RUNNING;
        } else if flags & SAVE_PAUSED != 0 {
            image.state = state::PAUSED;
        }
        image.write(path)
    }

    /// `virDomainManagedSave`: the domain stops and remembers to resume.
    pub fn managed_save(&mut self, uuid: Uuid, flags: u32) -> Result<(), PluginError> {
        let i = self.active_index(uuid)?;
        if !self.doms[i].persistent {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "cannot do managed save for transient domain",
            ));
        }
        let saved = save_state(&self.doms[i], flags);
        self.doms[i].managed_save = true;
        self.doms[i].managed_paused = saved == state::PAUSED;
        self.stop_saved(i);
        Ok(())
    }

    /// `virDomainManagedSaveRemove`.
    pub fn managed_save_remove(&mut self, uuid: Uuid) -> Result<(), PluginError> {
        let i = self.index(uuid)?;
        let d = &mut self.doms[i];
        d.managed_save = false;
        d.managed_paused = false;
        Ok(())
    }

    /// Starts from the managed save when the domain has one (`Some`), unless
    /// `VIR_DOMAIN_START_FORCE_BOOT` drops it.
    pub(super) fn start_managed(&mut self, i: usize, flags: u32) -> Option<()> {
        /// `VIR_DOMAIN_START_PAUSED`.
        const START_PAUSED: u32 = 1;
        /// `VIR_DOMAIN_START_FORCE_BOOT`.
        const FORCE_BOOT: u32 = 8;
        let d = &mut self.doms[i];
        if !d.managed_save {
            return None;
        }
        d.managed_save = false;
        let paused = std::mem::take(&mut d.managed_paused) || flags & START_PAUSED != 0;
        if flags & FORCE_BOOT != 0 {
            return None;
        }
        self.start_restored(i, paused);
        Some(())
    }
}

/// The state a save records: the domain's, unless `SAVE_RUNNING` or `SAVE_PAUSED` says.
fn save_state(d: &Dom, flags: u32) -> i32 {
    if flags & SAVE_RUNNING != 0 {
        state::RUNNING
    } else if flags & SAVE_PAUSED != 0 || d.state == state::PAUSED {
        state::PAUSED
    } else {
        state::RUNNING
    }
}

/// Whether a restore leaves the domain paused.
fn restore_paused(saved: i32, flags: u32) -> bool {
    if flags & SAVE_RUNNING != 0 {
        false
    } else {
        flags & SAVE_PAUSED != 0 || saved == state::PAUSED
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_round_trips_and_a_foreign_file_is_refused() {
        let img = Image {
            state: state::PAUSED,
            xml: "<domain type='test'/>".into(),
        };
        let back = Image::decode("p", &img.encode()).unwrap();
        assert_eq!(back.state, state::PAUSED);
        assert_eq!(back.xml, img.xml);
        let e = Image::decode("p", b"not an image at all, no sir")
            .err()
            .unwrap();
        assert!(
            e.message.contains("not a test driver save image"),
            "{}",
            e.message
        );
        let mut newer = img.encode();
        newer[16] = 9;
        let e = Image::decode("p", &newer).err().unwrap();
        assert!(e.message.contains("format version 9"), "{}", e.message);
        let mut cut = img.encode();
        cut.truncate(30);
        assert!(Image::decode("p", &cut).is_err());
    }

    #[test]
    fn flags_choose_the_state_after_restore() {
        assert!(!restore_paused(state::RUNNING, 0));
        assert!(restore_paused(state::PAUSED, 0));
        assert!(!restore_paused(state::PAUSED, SAVE_RUNNING));
        assert!(restore_paused(state::RUNNING, SAVE_PAUSED));
    }
}
