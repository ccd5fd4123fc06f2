//! The state of one test node: its domains, networks, pools and host facts, and the
//! lifecycle rules libvirt's test driver follows.

mod save;
mod stats;

use crate::snapshot::{self, Snapshots};
use rvirt_sdk::{
    abi::{
        DomainInfo, DomainRef, ErrorCode, ErrorDomain, EventSinkBox, NodeInfo, PluginError, Uuid,
        event, state,
    },
    filter::{self, DomainFacts},
    util::{from_abi_uuid, no_domain, operation_invalid, to_abi_uuid},
};
use rvirt_xml::{Domain, Element, FormatOptions, Network, StoragePool};
use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex},
    time::Instant,
};

pub type SharedNode = Arc<Mutex<Node>>;

/// libvirt's default test node: the objects `test:///default` starts with.
pub const DEFAULT_NODE_XML: &str = r#"<node>
  <domain type='test'>
    <name>test</name>
    <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
    <memory>8388608</memory>
    <currentMemory>2097152</currentMemory>
    <vcpu>2</vcpu>
    <os>
      <type>hvm</type>
    </os>
    <devices>
      <disk type='file' device='disk'>
        <source file='/guest/diskimage1'/>
        <target dev='vda' bus='virtio'/>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x01' function='0x0'/>
      </disk>
      <interface type='network'>
        <mac address='aa:bb:cc:dd:ee:ff'/>
        <source network='default'/>
        <target dev='testnet0'/>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x02' function='0x0'/>
      </interface>
      <memballoon model='virtio'>
        <address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>
      </memballoon>
    </devices>
  </domain>
  <network>
    <name>default</name>
    <uuid>dd8fe884-6c02-601e-7551-cca97df1c5df</uuid>
    <bridge name='virbr0'/>
    <forward/>
    <ip address='192.168.122.1' netmask='255.255.255.0'>
      <dhcp>
        <range start='192.168.122.2' end='192.168.122.254'/>
      </dhcp>
    </ip>
  </network>
  <pool type='dir'>
    <name>default-pool</name>
    <uuid>dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566</uuid>
    <target>
      <path>/default-pool</path>
    </target>
  </pool>
</node>
"#;

/// The capabilities document of the test driver.
pub const CAPABILITIES_XML: &str = "<capabilities>
  <host>
    <cpu>
      <arch>i686</arch>
      <features>
        <pae/>
        <nonpae/>
      </features>
    </cpu>
    <power_management/>
    <topology>
      <cells num='2'>
        <cell id='0'>
          <cpus num='8'>
            <cpu id='0' socket_id='0' core_id='0' siblings='0'/>
            <cpu id='2' socket_id='0' core_id='1' siblings='2'/>
            <cpu id='4' socket_id='0' core_id='2' siblings='4'/>
            <cpu id='6' socket_id='0' core_id='3' siblings='6'/>
            <cpu id='8' socket_id='0' core_id='4' siblings='8'/>
            <cpu id='10' socket_id='0' core_id='5' siblings='10'/>
            <cpu id='12' socket_id='0' core_id='6' siblings='12'/>
            <cpu id='14' socket_id='0' core_id='7' siblings='14'/>
          </cpus>
        </cell>
        <cell id='1'>
          <cpus num='8'>
            <cpu id='1' socket_id='1' core_id='0' siblings='1'/>
            <cpu id='3' socket_id='1' core_id='1' siblings='3'/>
            <cpu id='5' socket_id='1' core_id='2' siblings='5'/>
            <cpu id='7' socket_id='1' core_id='3' siblings='7'/>
            <cpu id='9' socket_id='1' core_id='4' siblings='9'/>
            <cpu id='11' socket_id='1' core_id='5' siblings='11'/>
            <cpu id='13' socket_id='1' core_id='6' siblings='13'/>
            <cpu id='15' socket_id='1' core_id='7' siblings='15'/>
          </cpus>
        </cell>
      </cells>
    </topology>
  </host>

  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <wordsize>32</wordsize>
      <emulator>/usr/bin/test-hv</emulator>
      <domain type='test'/>
    </arch>
    <features>
      <pae/>
      <nonpae/>
    </features>
  </guest>

  <guest>
    <os_type>xen</os_type>
    <arch name='i686'>
      <wordsize>32</wordsize>
      <emulator>/usr/bin/test-hv</emulator>
      <domain type='test'/>
    </arch>
    <features>
      <pae/>
      <nonpae/>
    </features>
  </guest>

</capabilities>
";

/// The namespace of the test driver's per-domain run-time hints in node files.
const TEST_NS: &str = "http://libvirt.org/schemas/domain/test/1.0";

/// One domain of the node.
pub struct Dom {
    /// The definition in force (the running one for an active domain). Its name and UUID
    /// never change: a redefinition must keep both.
    pub def: Domain,
    /// `def`'s UUID and name, cached: lookups must not walk the XML tree.
    uuid: Uuid,
    name: String,
    /// The persistent definition to switch to when an active domain stops.
    pub next_def: Option<Domain>,
    pub state: i32,
    pub reason: i32,
    pub id: Option<i32>,
    pub persistent: bool,
    pub autostart: bool,
    pub managed_save: bool,
    /// Whether the managed save was taken of (or asked to restore) a paused domain.
    managed_paused: bool,
    started: Option<Instant>,
    pub snapshots: Snapshots,
}

impl Dom {
    fn new(def: Domain, persistent: bool) -> Self {
        Dom {
            uuid: to_abi_uuid(def.uuid()),
            name: def.name().to_string(),
            def,
            next_def: None,
            state: state::SHUTOFF,
            reason: 0,
            id: None,
            persistent,
            autostart: false,
            managed_save: false,
            managed_paused: false,
            started: None,
            snapshots: Snapshots::default(),
        }
    }

    pub fn reference(&self) -> DomainRef {
        DomainRef {
            name: self.name.as_str().into(),
            uuid: self.uuid,
            id: self.id.unwrap_or(-1),
        }
    }

    pub fn is_active(&self) -> bool {
        self.id.is_some()
    }

    pub fn info(&self) -> DomainInfo {
        DomainInfo {
            state: self.state,
            max_mem_kib: self.def.memory_kib(),
            memory_kib: self.def.current_memory_kib(),
            nr_virt_cpu: self.def.current_vcpus(),
            cpu_time_ns: self
                .started
                .map(|t| u64::try_from(t.elapsed().as_nanos()).unwrap_or(u64::MAX))
                .unwrap_or(0),
        }
    }

    pub fn vcpus(&self, flags: u32) -> i32 {
        const MAXIMUM: u32 = 4;
        let n = if flags & MAXIMUM != 0 {
            self.def.max_vcpus()
        } else {
            self.def.current_vcpus()
        };
        i32::try_from(n).unwrap_or(i32::MAX)
    }

    pub fn xml(&self, flags: u32) -> String {
        const INACTIVE: u32 = 2;
        const SECURE: u32 = 1;
        let inactive = flags & INACTIVE != 0;
        let opts = FormatOptions {
            inactive,
            secure: flags & SECURE != 0,
        };
        if inactive {
            let def = self.next_def.as_ref().unwrap_or(&self.def);
            def.to_xml_with_id(&opts, None)
        } else {
            self.def.to_xml_with_id(&opts, self.id)
        }
    }

    fn facts(&self) -> DomainFacts {
        DomainFacts {
            state: self.state,
            persistent: self.persistent,
            autostart: self.autostart,
            managed_save: self.managed_save,
            has_snapshot: !self.snapshots.is_empty(),
        }
    }
}

/// One test node.
pub struct Node {
    pub node_info: NodeInfo,
    doms: Vec<Dom>,
    /// Position of each domain in `doms`, by UUID and by name.
    by_uuid: HashMap<Uuid, usize>,
    by_name: HashMap<String, usize>,
    /// The node's networks and pools. Parsing them validates a node file; no operation
    /// reads them yet, because the plugin API has no network or storage calls so far.
    #[allow(dead_code)]
    networks: Vec<Network>,
    #[allow(dead_code)]
    pools: Vec<StoragePool>,
    next_id: i32,
    sinks: Vec<(u64, EventSinkBox)>,
    next_sink: u64,
}

fn xml_error(e: impl std::fmt::Display) -> PluginError {
    PluginError::new(ErrorCode::XmlError, ErrorDomain::Domain, e.to_string())
}

fn test_err(code: ErrorCode, msg: String) -> PluginError {
    PluginError::new(code, ErrorDomain::Test, msg)
}

/// How a domain stops.
#[derive(Clone, Copy)]
pub enum Stop {
    Destroy,
    Shutdown,
}

impl Node {
    /// Builds a node from a `<node>` document. `dir` resolves `<domain file='...'/>`
    /// references.
    pub fn from_node_xml(text: &str, dir: Option<&Path>) -> Result<Node, PluginError> {
        let root = Element::parse(text).map_err(xml_error)?;
        if root.name() != "node" {
            return Err(xml_error(format!(
                "node: the root element of a test node file must be <node>, not <{}>",
                root.name()
            )));
        }
        let mut node = Node {
            node_info: NodeInfo {
                model: "i686".into(),
                memory_kib: 16 * 1024 * 1024,
                cpus: 16,
                mhz: 1400,
                nodes: 2,
                sockets: 2,
                cores: 2,
                threads: 2,
            },
            doms: Vec::new(),
            by_uuid: HashMap::new(),
            by_name: HashMap::new(),
            networks: Vec::new(),
            pools: Vec::new(),
            next_id: 1,
            sinks: Vec::new(),
            next_sink: 0,
        };
        let load = |e: &Element| -> Result<Element, PluginError> {
            match e.attr("file") {
                Some(f) => {
                    let p = dir.map(|d| d.join(f)).unwrap_or_else(|| f.into());
                    let text = std::fs::read_to_string(&p).map_err(|err| {
                        test_err(
                            ErrorCode::OpenFailed,
                            format!(
                                "cannot read '{}' named by node/{}/@file: {err}",
                                p.display(),
                                e.name()
                            ),
                        )
                    })?;
                    Element::parse(&text).map_err(xml_error)
                }
                None => Ok(e.clone()),
            }
        };
        for child in root.elements() {
            match child.name() {
                "domain" => {
                    let e = load(child)?;
                    let hints = RunHints::read(&e);
                    let def = Domain::from_element(e).map_err(xml_error)?;
                    node.check_new(&def)?;
                    let mut d = Dom::new(def, !hints.transient);
                    d.managed_save = hints.managed_save;
                    let st = hints.runstate.unwrap_or(state::RUNNING);
                    if st != state::SHUTOFF {
                        d.id = Some(node.next_id);
                        node.next_id += 1;
                        d.state = st;
                        d.reason = 0; // unknown, as libvirt reports node-file domains
                        d.started = Some(Instant::now());
                    }
                    node.push(d);
                }
                "network" => node
                    .networks
                    .push(Network::from_element(load(child)?).map_err(xml_error)?),
                "pool" => {
                    let mut e = load(child)?;
                    // Volumes of a pool in a node file are the pool's contents, not part of
                    // its XML.
                    e.remove_children(|c| c.name() == "volume");
                    node.pools
                        .push(StoragePool::from_element(e).map_err(xml_error)?)
                }
                "cpu" => {
                    let num = |name: &str| {
                        child
                            .child(name)
                            .and_then(|c| c.text().trim().parse::<u32>().ok())
                    };
                    let ni = &mut node.node_info;
                    ni.mhz = num("mhz").unwrap_or(ni.mhz);
                    ni.cpus = num("active").unwrap_or(ni.cpus);
                    ni.nodes = num("nodes").unwrap_or(ni.nodes);
                    ni.sockets = num("sockets").unwrap_or(ni.sockets);
                    ni.cores = num("cores").unwrap_or(ni.cores);
                    ni.threads = num("threads").unwrap_or(ni.threads);
                    if let Some(m) = child.child("model") {
                        ni.model = m.text().trim().into();
                    }
                }
                "memory" => {
                    if let Ok(kib) = child.text().trim().parse::<u64>() {
                        node.node_info.memory_kib = kib;
                    }
                }
                _ => {}
            }
        }
        Ok(node)
    }

    pub fn add_sink(&mut self, sink: EventSinkBox) -> u64 {
        self.next_sink += 1;
        self.sinks.push((self.next_sink, sink));
        self.next_sink
    }

    pub fn remove_sink(&mut self, id: u64) {
        self.sinks.retain(|(i, _)| *i != id);
    }

    fn emit(&self, d: &Dom, ev: i32, detail: i32) {
        let r = d.reference();
        for (_, s) in &self.sinks {
            s.domain_lifecycle(r.clone(), ev, detail);
        }
    }

    pub fn list(&self, flags: u32) -> Vec<DomainRef> {
        self.doms
            .iter()
            .filter(|d| filter::matches(flags, &d.facts()))
            .map(Dom::reference)
            .collect()
    }

    fn push(&mut self, d: Dom) -> usize {
        let i = self.doms.len();
        self.by_uuid.insert(d.uuid, i);
        self.by_name.insert(d.name.clone(), i);
        self.doms.push(d);
        i
    }

    fn remove(&mut self, i: usize) {
        let d = self.doms.remove(i);
        self.by_uuid.remove(&d.uuid);
        self.by_name.remove(&d.name);
        for (j, d) in self.doms.iter().enumerate().skip(i) {
            self.by_uuid.insert(d.uuid, j);
            self.by_name.insert(d.name.clone(), j);
        }
    }

    pub fn by_name(&self, name: &str) -> Result<&Dom, PluginError> {
        self.by_name
            .get(name)
            .map(|&i| &self.doms[i])
            .ok_or_else(|| {
                no_domain(
                    ErrorDomain::Test,
                    &format!("no domain with matching name '{name}'"),
                )
            })
    }

    fn index(&self, uuid: Uuid) -> Result<usize, PluginError> {
        self.by_uuid.get(&uuid).copied().ok_or_else(|| {
            no_domain(
                ErrorDomain::Test,
                &format!("no domain with matching uuid '{}'", from_abi_uuid(uuid)),
            )
        })
    }

    pub fn by_uuid(&self, uuid: Uuid) -> Result<&Dom, PluginError> {
        self.index(uuid).map(|i| &self.doms[i])
    }

    pub fn by_id(&self, id: i32) -> Result<&Dom, PluginError> {
        self.doms.iter().find(|d| d.id == Some(id)).ok_or_else(|| {
            no_domain(
                ErrorDomain::Test,
                &format!("no domain with matching id {id}"),
            )
        })
    }

    /// Checks that a new definition neither reuses a name with another UUID nor a UUID
    /// with another name.
    fn check_new(&self, def: &Domain) -> Result<Option<usize>, PluginError> {
        let uuid = to_abi_uuid(def.uuid());
        match (self.by_name.get(def.name()), self.by_uuid.get(&uuid)) {
            (Some(&i), Some(&j)) if i == j => Ok(Some(i)),
            (Some(&i), _) => Err(test_err(
                ErrorCode::DomExist,
                format!(
                    "domain '{}' already exists with uuid {}",
                    def.name(),
                    from_abi_uuid(self.doms[i].uuid)
                ),
            )),
            (None, Some(&j)) => Err(test_err(
                ErrorCode::DomExist,
                format!(
                    "domain '{}' is already defined with uuid {}",
                    self.doms[j].name,
                    def.uuid()
                ),
            )),
            (None, None) => Ok(None),
        }
    }

    fn parse(xml: &str) -> Result<Domain, PluginError> {
        let def = Domain::parse(xml).map_err(xml_error)?;
        if def.domain_type() != "test" {
            return Err(test_err(
                ErrorCode::ConfigUnsupported,
                format!(
                    "unsupported configuration: domain type '{}' is not supported by the test driver (use type='test')",
                    def.domain_type()
                ),
            ));
        }
        Ok(def)
    }

    pub fn define(&mut self, xml: &str) -> Result<DomainRef, PluginError> {
        let def = Self::parse(xml)?;
        let (i, detail) = match self.check_new(&def)? {
            Some(i) => {
                let d = &mut self.doms[i];
                if d.is_active() {
                    d.next_def = Some(def);
                } else {
                    d.def = def;
                }
                d.persistent = true;
                (i, 1) // VIR_DOMAIN_EVENT_DEFINED_UPDATED
            }
            None => {
                (self.push(Dom::new(def, true)), 0) // VIR_DOMAIN_EVENT_DEFINED_ADDED
            }
        };
        self.emit(&self.doms[i], event::DEFINED, detail);
        Ok(self.doms[i].reference())
    }

    pub fn undefine(&mut self, uuid: Uuid, flags: u32) -> Result<(), PluginError> {
        /// `VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA`.
        const SNAPSHOTS_METADATA: u32 = 2;
        /// `VIR_DOMAIN_UNDEFINE_MANAGED_SAVE`.
        const MANAGED_SAVE: u32 = 1;
        let i = self.index(uuid)?;
        let d = &self.doms[i];
        if d.managed_save && flags & MANAGED_SAVE == 0 {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "Refusing to undefine while domain managed save image exists",
            ));
        }
        if !d.snapshots.is_empty() && flags & SNAPSHOTS_METADATA == 0 {
            return Err(operation_invalid(
                ErrorDomain::Test,
                &format!(
                    "cannot delete inactive domain with {} snapshots",
                    d.snapshots.len()
                ),
            ));
        }
        if !d.persistent {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "cannot undefine transient domain",
            ));
        }
        self.emit(d, event::UNDEFINED, 0);
        if d.is_active() {
            let d = &mut self.doms[i];
            d.persistent = false;
            d.next_def = None;
            d.snapshots = Snapshots::default();
        } else {
            self.remove(i);
        }
        Ok(())
    }

    fn start_at(&mut self, i: usize, flags: u32) {
        const PAUSED: u32 = 1;
        let id = self.next_id;
        self.next_id += 1;
        let d = &mut self.doms[i];
        d.id = Some(id);
        d.started = Some(Instant::now());
        if flags & PAUSED != 0 {
            d.state = state::PAUSED;
            d.reason = 1; // user
        } else {
            d.state = state::RUNNING;
            d.reason = 1; // booted
        }
        let d = &self.doms[i];
        self.emit(d, event::STARTED, 0);
        if flags & PAUSED != 0 {
            self.emit(d, event::SUSPENDED, 0);
        }
    }

    pub fn start(&mut self, uuid: Uuid, flags: u32) -> Result<DomainRef, PluginError> {
        let i = self.index(uuid)?;
        if self.doms[i].is_active() {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "domain is already running",
            ));
        }
        if self.start_managed(i, flags).is_none() {
            self.start_at(i, flags);
        }
        Ok(self.doms[i].reference())
    }

    pub fn create_transient(&mut self, xml: &str, flags: u32) -> Result<DomainRef, PluginError> {
        let def = Self::parse(xml)?;
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
        self.start_at(i, flags);
        Ok(self.doms[i].reference())
    }

    pub fn stop(&mut self, uuid: Uuid, how: Stop) -> Result<(), PluginError> {
        let i = self.index(uuid)?;
        if !self.doms[i].is_active() {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "domain is not running",
            ));
        }
        let (reason, detail) = match how {
            Stop::Shutdown => (1, 0), // shut off: shutdown / stopped: shutdown
            Stop::Destroy => (2, 1),  // shut off: destroyed / stopped: destroyed
        };
        let d = &mut self.doms[i];
        d.state = state::SHUTOFF;
        d.reason = reason;
        let r = d.reference();
        d.id = None;
        d.started = None;
        if let Some(next) = d.next_def.take() {
            d.def = next;
        }
        // The event names the domain as it was, with its id.
        for (_, s) in &self.sinks {
            s.domain_lifecycle(r.clone(), event::STOPPED, detail);
        }
        if !self.doms[i].persistent {
            self.remove(i);
        }
        Ok(())
    }

    pub fn reboot(&mut self, uuid: Uuid) -> Result<(), PluginError> {
        let i = self.index(uuid)?;
        if !self.doms[i].is_active() {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "domain is not running",
            ));
        }
        let d = &mut self.doms[i];
        d.state = state::RUNNING;
        d.reason = 1;
        Ok(())
    }

    pub fn suspend(&mut self, uuid: Uuid) -> Result<(), PluginError> {
        let i = self.index(uuid)?;
        let d = &mut self.doms[i];
        if !d.is_active() {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "domain is not running",
            ));
        }
        if d.state == state::PAUSED {
            return Err(operation_invalid(
                ErrorDomain::Test,
                &format!("domain '{}' is already paused", d.def.name()),
            ));
        }
        d.state = state::PAUSED;
        d.reason = 1; // user
        self.emit(&self.doms[i], event::SUSPENDED, 0);
        Ok(())
    }

    pub fn resume(&mut self, uuid: Uuid) -> Result<(), PluginError> {
        let i = self.index(uuid)?;
        let d = &mut self.doms[i];
        if d.state != state::PAUSED {
            return Err(operation_invalid(
                ErrorDomain::Test,
                &format!("domain '{}' is not paused", d.def.name()),
            ));
        }
        d.state = state::RUNNING;
        d.reason = 5; // unpaused
        self.emit(&self.doms[i], event::RESUMED, 0);
        Ok(())
    }

    pub fn set_autostart(&mut self, uuid: Uuid, autostart: bool) -> Result<(), PluginError> {
        let i = self.index(uuid)?;
        if !self.doms[i].persistent {
            return Err(operation_invalid(
                ErrorDomain::Test,
                "cannot set autostart for transient domain",
            ));
        }
        self.doms[i].autostart = autostart;
        Ok(())
    }
}

/// `virDomainSetMemoryFlags` / `virDomainSetVcpusFlags` bits.
mod affect {
    pub const LIVE: u32 = 1;
    pub const CONFIG: u32 = 2;
    /// `VIR_DOMAIN_MEM_MAXIMUM` and `VIR_DOMAIN_VCPU_MAXIMUM`.
    pub const MAXIMUM: u32 = 4;
}

/// Domain management (plugin API 1.7): memory and vCPU counts, snapshots.
impl Node {
    /// The definitions a change with `flags` edits: the running one (`LIVE`, or the
    /// default on an active domain), the persistent one (`CONFIG`, or the default on an
    /// inactive domain).
    fn targets(
        &mut self,
        uuid: Uuid,
        flags: u32,
        op: &str,
    ) -> Result<Vec<&mut Domain>, PluginError> {
        let i = self.index(uuid)?;
        let d = &mut self.doms[i];
        let active = d.is_active();
        let (live, config) = match flags & (affect::LIVE | affect::CONFIG) {
            0 => (active, !active),
            f => (f & affect::LIVE != 0, f & affect::CONFIG != 0),
        };
        if live && !active {
            return Err(operation_invalid(
                ErrorDomain::Test,
                &format!("{op}: domain is not running"),
            ));
        }
        if config && !d.persistent {
            return Err(operation_invalid(
                ErrorDomain::Test,
                &format!("{op}: cannot change the persistent configuration of a transient domain"),
            ));
        }
        if config && active && d.next_def.is_none() {
            d.next_def = Some(d.def.clone());
        }
        let Dom { def, next_def, .. } = d;
        let mut out = Vec::new();
        if live || (config && !active) {
            out.push(def);
        }
        if config && active {
            out.extend(next_def.as_mut());
        }
        Ok(out)
    }

    pub fn set_memory(&mut self, uuid: Uuid, kib: u64, flags: u32) -> Result<(), PluginError> {
        let op = "virDomainSetMemoryFlags";
        if flags & affect::MAXIMUM != 0 && flags & affect::LIVE != 0 {
            return Err(test_err(
                ErrorCode::ConfigUnsupported,
                "cannot resize the maximum memory on an active domain".into(),
            ));
        }
        if kib == 0 {
            return Err(test_err(
                ErrorCode::InvalidArg,
                format!("{op}: memory must be greater than 0 KiB"),
            ));
        }
        let maximum = flags & affect::MAXIMUM != 0;
        let active = self.doms[self.index(uuid)?].is_active();
        if maximum && active && flags & affect::CONFIG == 0 {
            return Err(test_err(
                ErrorCode::ConfigUnsupported,
                "cannot resize the maximum memory on an active domain".into(),
            ));
        }
        // check every target first: nothing changes when one refuses
        let targets = self.targets(uuid, flags, op)?;
        if !maximum && let Some(max) = targets.iter().map(|d| d.memory_kib()).find(|m| kib > *m) {
            return Err(test_err(
                ErrorCode::InvalidArg,
                format!("{op}: cannot set memory higher than max memory ({kib} KiB > {max} KiB)"),
            ));
        }
        for d in targets {
            if maximum {
                d.set_memory_kib(kib);
                if d.current_memory_kib() > kib {
                    d.set_current_memory_kib(kib);
                }
            } else {
                d.set_current_memory_kib(kib);
            }
        }
        Ok(())
    }

    pub fn set_vcpus(&mut self, uuid: Uuid, n: u32, flags: u32) -> Result<(), PluginError> {
        let op = "virDomainSetVcpusFlags";
        let maximum = flags & affect::MAXIMUM != 0;
        let active = self.doms[self.index(uuid)?].is_active();
        if maximum && (flags & affect::LIVE != 0 || (active && flags & affect::CONFIG == 0)) {
            return Err(test_err(
                ErrorCode::InvalidArg,
                format!("{op}: cannot change the maximum vCPU count of a running domain"),
            ));
        }
        if n == 0 {
            return Err(test_err(
                ErrorCode::InvalidArg,
                format!("{op}: the vCPU count must be at least 1"),
            ));
        }
        let targets = self.targets(uuid, flags, op)?;
        if !maximum && let Some(max) = targets.iter().map(|d| d.max_vcpus()).find(|m| n > *m) {
            return Err(test_err(
                ErrorCode::InvalidArg,
                format!(
                    "{op}: requested vcpus is greater than max allowable vcpus for the domain: {n} > {max}"
                ),
            ));
        }
        for d in targets {
            let current = d.current_vcpus();
            let v = d.element_mut().child_or_insert("vcpu");
            if maximum {
                v.set_text(&n.to_string());
                if current > n {
                    v.remove_attr("current");
                }
            } else if n == v.text().trim().parse().unwrap_or(1) {
                v.remove_attr("current");
            } else {
                v.set_attr("current", &n.to_string());
            }
        }
        Ok(())
    }

    pub fn snapshots(&self, uuid: Uuid) -> Result<&Snapshots, PluginError> {
        Ok(&self.doms[self.index(uuid)?].snapshots)
    }

    pub fn snapshot_create(
        &mut self,
        uuid: Uuid,
        xml: &str,
        flags: u32,
    ) -> Result<String, PluginError> {
        let req = snapshot::Request::parse(xml)?;
        let i = self.index(uuid)?;
        let d = &mut self.doms[i];
        let st = if d.is_active() {
            d.state
        } else {
            state::SHUTOFF
        };
        let def = d.def.clone();
        let name = d.snapshots.take(req, &def, st)?;
        if flags & snapshot::create::HALT != 0 && self.doms[i].is_active() {
            self.stop(uuid, Stop::Destroy)?;
        }
        Ok(name)
    }

    pub fn snapshot_revert(
        &mut self,
        uuid: Uuid,
        name: &str,
        flags: u32,
    ) -> Result<(), PluginError> {
        use snapshot::revert;
        if flags & revert::RUNNING != 0 && flags & revert::PAUSED != 0 {
            return Err(test_err(
                ErrorCode::InvalidArg,
                "virDomainRevertToSnapshot: the running and paused flags exclude each other".into(),
            ));
        }
        let i = self.index(uuid)?;
        let (def, snap_state) = self.doms[i].snapshots.revert_to(name)?;
        let want = if flags & revert::RUNNING != 0 {
            state::RUNNING
        } else if flags & revert::PAUSED != 0 {
            state::PAUSED
        } else {
            snap_state
        };
        // VIR_DOMAIN_EVENT_*_FROM_SNAPSHOT details and VIR_DOMAIN_*_FROM_SNAPSHOT reasons
        const STARTED_FROM_SNAPSHOT: i32 = 3;
        const STOPPED_FROM_SNAPSHOT: i32 = 6;
        const SUSPENDED_FROM_SNAPSHOT: i32 = 5;
        const RESUMED_FROM_SNAPSHOT: i32 = 2;
        const RUNNING_FROM_SNAPSHOT: i32 = 4;
        const PAUSED_FROM_SNAPSHOT: i32 = 7;
        const SHUTOFF_FROM_SNAPSHOT: i32 = 7;
        let was = if self.doms[i].is_active() {
            self.doms[i].state
        } else {
            state::SHUTOFF
        };
        if want == state::SHUTOFF {
            if was != state::SHUTOFF {
                let d = &mut self.doms[i];
                let r = d.reference();
                d.id = None;
                d.started = None;
                for (_, s) in &self.sinks {
                    s.domain_lifecycle(r.clone(), event::STOPPED, STOPPED_FROM_SNAPSHOT);
                }
            }
            let d = &mut self.doms[i];
            d.state = state::SHUTOFF;
            d.reason = SHUTOFF_FROM_SNAPSHOT;
            d.def = def;
            d.next_def = None;
            if !d.persistent {
                self.remove(i);
            }
            return Ok(());
        }
        if was == state::SHUTOFF {
            let id = self.next_id;
            self.next_id += 1;
            let d = &mut self.doms[i];
            d.id = Some(id);
            d.started = Some(Instant::now());
        }
        let d = &mut self.doms[i];
        if d.persistent && d.next_def.is_none() && was != state::SHUTOFF {
            d.next_def = Some(d.def.clone());
        }
        d.def = def;
        d.state = want;
        d.reason = if want == state::PAUSED {
            PAUSED_FROM_SNAPSHOT
        } else {
            RUNNING_FROM_SNAPSHOT
        };
        let d = &self.doms[i];
        if was == state::SHUTOFF {
            self.emit(d, event::STARTED, STARTED_FROM_SNAPSHOT);
            if want == state::PAUSED {
                self.emit(d, event::SUSPENDED, SUSPENDED_FROM_SNAPSHOT);
            }
        } else if was == state::PAUSED && want == state::RUNNING {
            self.emit(d, event::RESUMED, RESUMED_FROM_SNAPSHOT);
        } else if was == state::RUNNING && want == state::PAUSED {
            self.emit(d, event::SUSPENDED, SUSPENDED_FROM_SNAPSHOT);
        }
        Ok(())
    }

    pub fn snapshot_delete(
        &mut self,
        uuid: Uuid,
        name: &str,
        flags: u32,
    ) -> Result<(), PluginError> {
        let i = self.index(uuid)?;
        self.doms[i].snapshots.delete(name, flags)
    }
}

/// The test driver's run-time hints inside a node file's `<domain>`
/// (`<test:runstate>`, `<test:transient/>`, `<test:hasmanagedsave/>`), removed from the
/// definition once read.
struct RunHints {
    runstate: Option<i32>,
    transient: bool,
    managed_save: bool,
}

impl RunHints {
    fn read(e: &Element) -> RunHints {
        let prefix = e
            .attrs()
            .iter()
            .find(|(k, v)| k.starts_with("xmlns:") && v == TEST_NS)
            .map(|(k, _)| k.trim_start_matches("xmlns:").to_string());
        let mut h = RunHints {
            runstate: None,
            transient: false,
            managed_save: false,
        };
        let Some(prefix) = prefix else { return h };
        for c in e.elements() {
            let Some(local) = c.name().strip_prefix(&format!("{prefix}:")) else {
                continue;
            };
            match local {
                "runstate" => h.runstate = c.text().trim().parse().ok(),
                "transient" => h.transient = true,
                "hasmanagedsave" => h.managed_save = true,
                _ => {}
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_node_has_libvirts_objects() {
        let n = Node::from_node_xml(DEFAULT_NODE_XML, None).unwrap();
        let t = n.by_name("test").unwrap();
        assert_eq!(t.state, state::RUNNING);
        assert_eq!(t.id, Some(1));
        assert_eq!(t.def.memory_kib(), 8388608);
        assert_eq!(n.networks[0].name(), "default");
        assert_eq!(n.pools[0].name(), "default-pool");
    }

    #[test]
    fn lifecycle_rules() {
        let mut n = Node::from_node_xml(DEFAULT_NODE_XML, None).unwrap();
        let xml = "<domain type='test'><name>vm1</name><memory unit='MiB'>64</memory><os><type>hvm</type></os></domain>";
        let r = n.define(xml).unwrap();
        assert_eq!(r.id, -1);
        assert_eq!(n.by_uuid(r.uuid).unwrap().def.memory_kib(), 65536);
        assert!(n.stop(r.uuid, Stop::Destroy).is_err());
        let r = n.start(r.uuid, 0).unwrap();
        assert_eq!(r.id, 2);
        assert!(n.start(r.uuid, 0).is_err());
        n.suspend(r.uuid).unwrap();
        assert!(n.suspend(r.uuid).is_err());
        n.resume(r.uuid).unwrap();
        n.stop(r.uuid, Stop::Shutdown).unwrap();
        let d = n.by_uuid(r.uuid).unwrap();
        assert_eq!((d.state, d.reason, d.id), (state::SHUTOFF, 1, None));
        n.undefine(r.uuid, 0).unwrap();
        assert!(n.by_name("vm1").is_err());
    }

    #[test]
    fn define_rejects_name_clash_and_other_types() {
        let mut n = Node::from_node_xml(DEFAULT_NODE_XML, None).unwrap();
        let clash = "<domain type='test'><name>test</name><uuid>11111111-2222-3333-4444-555555555555</uuid><memory>1024</memory><os><type>hvm</type></os></domain>";
        let e = n.define(clash).unwrap_err();
        assert_eq!(e.code, ErrorCode::DomExist as i32);
        let kvm = "<domain type='kvm'><name>k</name><memory>1024</memory><os><type>hvm</type></os></domain>";
        assert_eq!(
            n.define(kvm).unwrap_err().code,
            ErrorCode::ConfigUnsupported as i32
        );
    }

    #[test]
    fn lookups_stay_right_after_removals() {
        let mut n = Node::from_node_xml(DEFAULT_NODE_XML, None).unwrap();
        let refs: Vec<_> = (0..4)
            .map(|k| {
                let xml = format!("<domain type='test'><name>d{k}</name><memory>1024</memory><os><type>hvm</type></os></domain>");
                n.define(&xml).unwrap()
            })
            .collect();
        n.undefine(refs[1].uuid, 0).unwrap();
        assert!(n.by_name("d1").is_err() && n.by_uuid(refs[1].uuid).is_err());
        for k in [0usize, 2, 3] {
            assert_eq!(n.by_name(&format!("d{k}")).unwrap().reference(), refs[k]);
            assert_eq!(n.by_uuid(refs[k].uuid).unwrap().reference(), refs[k]);
        }
        assert_eq!(n.list(0).len(), 4);
    }

    #[test]
    fn transient_domain_vanishes_when_stopped() {
        let mut n = Node::from_node_xml(DEFAULT_NODE_XML, None).unwrap();
        let xml = "<domain type='test'><name>t1</name><memory>1024</memory><os><type>hvm</type></os></domain>";
        let r = n.create_transient(xml, 0).unwrap();
        assert!(r.id > 0);
        n.stop(r.uuid, Stop::Destroy).unwrap();
        assert!(n.by_name("t1").is_err());
    }

    #[test]
    fn node_file_hints() {
        let xml = format!(
            "<node><domain type='test' xmlns:test='{TEST_NS}'><name>off</name><memory>1024</memory><os><type>hvm</type></os><test:runstate>5</test:runstate></domain><cpu><mhz>6000</mhz><model>i986</model></cpu></node>"
        );
        let n = Node::from_node_xml(&xml, None).unwrap();
        assert_eq!(n.by_name("off").unwrap().state, state::SHUTOFF);
        assert_eq!(n.node_info.mhz, 6000);
        assert_eq!(n.node_info.model.as_str(), "i986");
    }
}
