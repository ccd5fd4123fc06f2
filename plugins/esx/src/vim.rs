//! Typed calls of the vSphere API (`urn:vim25`) over one session: each call writes its own
//! arguments ([`Body`]) and reads its own answer. A call answered `NotAuthenticated` logs
//! in again (the session expired on the server) and is retried once.

use crate::soap::{Answer, Body, Client, MoRef, Node, Pull, SoapError};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Errors of the API layer.
#[derive(Debug, thiserror::Error)]
pub enum VimError {
    #[error(transparent)]
    Soap(#[from] SoapError),
    #[error("missing '{0}' in the answer of the server")]
    Missing(String),
    #[error("task {task} failed: {fault}: {message}")]
    Task {
        task: String,
        fault: String,
        message: String,
    },
    #[error(
        "pending question blocks virtual machine execution, question is '{0}' (auto_answer=1 answers the default)"
    )]
    Question(String),
    #[error("task {0} did not finish within {1} s")]
    TaskTimeout(String, u64),
}

impl VimError {
    /// The vSphere fault type of a failed call or task.
    pub fn fault(&self) -> Option<&str> {
        match self {
            VimError::Soap(s) => s.fault(),
            VimError::Task { fault, .. } => Some(fault),
            _ => None,
        }
    }
}

/// What `RetrieveServiceContent` answers (the parts this driver uses).
#[derive(Debug, Clone)]
pub struct ServiceContent {
    pub root_folder: MoRef,
    pub property_collector: MoRef,
    pub view_manager: MoRef,
    pub session_manager: MoRef,
    pub search_index: MoRef,
    /// `VirtualDiskManager` (absent on servers without one).
    pub virtual_disk_manager: Option<MoRef>,
    /// `FileManager` (absent on servers without one).
    pub file_manager: Option<MoRef>,
    /// `HostAgent` (ESX, GSX) or `VirtualCenter`.
    pub api_type: String,
    pub api_version: String,
    pub version: String,
    pub full_name: String,
    pub product_line: String,
}

/// One object of a property retrieval: its reference and `(path, value)` pairs.
#[derive(Debug, Clone)]
pub struct ObjectContent {
    pub obj: MoRef,
    pub props: Vec<(String, Node)>,
}

impl ObjectContent {
    pub fn get(&self, path: &str) -> Option<&Node> {
        self.props.iter().find(|(p, _)| p == path).map(|(_, v)| v)
    }

    pub fn text(&self, path: &str) -> Option<&str> {
        self.get(path).map(|v| v.text.trim())
    }

    pub fn num(&self, path: &str) -> Option<i64> {
        self.text(path).and_then(|t| t.parse().ok())
    }
}

fn need<'a>(n: &'a Node, path: &str) -> Result<&'a Node, VimError> {
    n.path(path)
        .ok_or_else(|| VimError::Missing(path.to_string()))
}

fn need_moref(n: &Node, path: &str) -> Result<MoRef, VimError> {
    need(n, path)?
        .moref()
        .ok_or_else(|| VimError::Missing(format!("{path}/@type")))
}

/// Receives the objects of a property retrieval as they are read off the network.
pub trait PropertySink {
    /// An object starts (its `obj`); its properties follow.
    fn object(&mut self, obj: MoRef);
    /// The property `path` of the last object: the `<val>` element is current in `p`
    /// (`empty` as [`Pull::child`] said) and must be read to its end (`text`, `subtree`
    /// or `skip`).
    fn property<R: std::io::BufRead>(
        &mut self,
        path: &str,
        p: &mut Pull<R>,
        empty: bool,
    ) -> Result<(), SoapError>;
}

/// The generic sink: every object with its properties as [`Node`] trees.
#[derive(Debug, Default)]
pub struct Contents(pub Vec<ObjectContent>);

impl PropertySink for Contents {
    fn object(&mut self, obj: MoRef) {
        self.0.push(ObjectContent {
            obj,
            props: Vec::with_capacity(8),
        });
    }

    fn property<R: std::io::BufRead>(
        &mut self,
        path: &str,
        p: &mut Pull<R>,
        empty: bool,
    ) -> Result<(), SoapError> {
        let v = p.subtree(empty)?;
        if let Some(o) = self.0.last_mut() {
            o.props.push((path.to_string(), v));
        }
        Ok(())
    }
}

/// Reads a `RetrievePropertiesExResponse` (or `ContinueRetrievePropertiesExResponse`)
/// as it arrives, straight into `sink`: `returnval` > `token` and `objects` > `obj` and
/// `propSet` > `name`, `val`; `missingSet`s and anything unknown are skipped. Returns the
/// continuation token.
pub fn read_retrieve_result<R: std::io::BufRead, S: PropertySink>(
    p: &mut Pull<R>,
    empty: bool,
    sink: &mut S,
) -> Result<Option<String>, SoapError> {
    let mut token = None;
    if empty {
        return Ok(token);
    }
    let mut path = String::new();
    while let Some(e) = p.child()? {
        if p.name() != "returnval" || e {
            p.skip(e)?;
            continue;
        }
        while let Some(e) = p.child()? {
            match p.name() {
                "token" => token = Some(p.text(e)?).filter(|t| !t.is_empty()),
                "objects" if !e => {
                    let mut have_obj = false;
                    while let Some(e) = p.child()? {
                        match p.name() {
                            "obj" => {
                                let kind = p.attr("type").unwrap_or("").to_string();
                                let value = p.text(e)?;
                                sink.object(MoRef { kind, value });
                                have_obj = true;
                            }
                            "propSet" if !e => {
                                if !have_obj {
                                    return Err(SoapError::Malformed(
                                        "a propSet before its obj".into(),
                                    ));
                                }
                                // DynamicProperty is a sequence: name, then val
                                path.clear();
                                while let Some(e) = p.child()? {
                                    match p.name() {
                                        "name" => p.text_into(&mut path, e)?,
                                        "val" if path.is_empty() => {
                                            return Err(SoapError::Malformed(
                                                "a propSet val before its name".into(),
                                            ));
                                        }
                                        "val" => sink.property(&path, p, e)?,
                                        _ => p.skip(e)?,
                                    }
                                }
                            }
                            _ => p.skip(e)?,
                        }
                    }
                }
                _ => p.skip(e)?,
            }
        }
    }
    Ok(token)
}

/// A logged-in session.
#[derive(Debug)]
pub struct Session {
    pub client: Client,
    pub content: ServiceContent,
    credentials: Mutex<(String, String)>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.logout();
    }
}

impl Session {
    /// `RetrieveServiceContent` then `Login`.
    pub fn login(client: Client, user: &str, password: &str) -> Result<Session, VimError> {
        let si = MoRef::new("ServiceInstance", "ServiceInstance");
        let r = client.call("RetrieveServiceContent", &si, |_| {})?;
        let rv = need(&r, "returnval")?;
        let about = need(rv, "about")?;
        let t = |n: &str| about.text_of(n).unwrap_or("").to_string();
        let content = ServiceContent {
            root_folder: need_moref(rv, "rootFolder")?,
            property_collector: need_moref(rv, "propertyCollector")?,
            view_manager: need_moref(rv, "viewManager")?,
            session_manager: need_moref(rv, "sessionManager")?,
            search_index: need_moref(rv, "searchIndex")?,
            virtual_disk_manager: rv.child("virtualDiskManager").and_then(Node::moref),
            file_manager: rv.child("fileManager").and_then(Node::moref),
            api_type: t("apiType"),
            api_version: t("apiVersion"),
            version: t("version"),
            full_name: t("fullName"),
            product_line: t("productLineId"),
        };
        let s = Session {
            client,
            content,
            credentials: Mutex::new((user.to_string(), password.to_string())),
        };
        s.relogin()?;
        Ok(s)
    }

    fn relogin(&self) -> Result<(), VimError> {
        let (user, password) = self
            .credentials
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.client.clear_cookie();
        self.client
            .call("Login", &self.content.session_manager, |b| {
                b.text("userName", &user);
                b.text("password", &password);
            })?;
        Ok(())
    }

    /// One call, logging in again once where the session expired.
    pub fn invoke(
        &self,
        method: &str,
        this: &MoRef,
        args: impl Fn(&mut Body),
    ) -> Result<Node, VimError> {
        match self.client.call(method, this, &args) {
            Err(e) if e.fault() == Some("NotAuthenticated") => {
                self.relogin()?;
                Ok(self.client.call(method, this, &args)?)
            }
            r => Ok(r?),
        }
    }

    /// [`Session::invoke`] with the answer read by `read` as it arrives
    /// ([`Client::call_with`]).
    pub fn invoke_with<T>(
        &self,
        method: &str,
        this: &MoRef,
        args: impl Fn(&mut Body),
        mut read: impl FnMut(&mut Answer, bool) -> Result<T, SoapError>,
    ) -> Result<T, VimError> {
        match self.client.call_with(method, this, &args, &mut read) {
            Err(e) if e.fault() == Some("NotAuthenticated") => {
                self.relogin()?;
                Ok(self.client.call_with(method, this, &args, &mut read)?)
            }
            r => Ok(r?),
        }
    }

    /// `Logout` (errors ignored: the connection is going away).
    pub fn logout(&self) {
        let _ = self
            .client
            .call("Logout", &self.content.session_manager, |_| {});
    }

    /// `CreateContainerView` of `kind` objects under `container`, recursive.
    pub fn container_view(&self, container: &MoRef, kind: &str) -> Result<MoRef, VimError> {
        self.container_view_of(container, &[kind])
    }

    /// `CreateContainerView` of objects of any of `kinds` under `container`, recursive.
    pub fn container_view_of(&self, container: &MoRef, kinds: &[&str]) -> Result<MoRef, VimError> {
        let r = self.invoke("CreateContainerView", &self.content.view_manager, |b| {
            b.moref("container", container);
            for k in kinds {
                b.text("type", k);
            }
            b.text("recursive", "true");
        })?;
        need_moref(&r, "returnval")
    }

    /// `DestroyView` (errors ignored).
    pub fn destroy_view(&self, view: &MoRef) {
        let _ = self.invoke("DestroyView", view, |_| {});
    }

    /// `RetrievePropertiesEx` (+ `ContinueRetrievePropertiesEx`) of `paths` of every
    /// `kind` object in the ContainerView `start` (`through_view`), or of the single object
    /// `start`.
    pub fn retrieve(
        &self,
        start: &MoRef,
        through_view: bool,
        kind: &str,
        paths: &[&str],
    ) -> Result<Vec<ObjectContent>, VimError> {
        self.retrieve_specs(start, through_view, &[(kind, paths)])
    }

    /// [`Session::retrieve`] with one property set per object type.
    pub fn retrieve_specs(
        &self,
        start: &MoRef,
        through_view: bool,
        specs: &[(&str, &[&str])],
    ) -> Result<Vec<ObjectContent>, VimError> {
        let mut out = Contents::default();
        self.retrieve_into(start, through_view, specs, &mut out)?;
        Ok(out.0)
    }

    /// [`Session::retrieve_specs`] read straight into `sink` as the answer arrives.
    pub fn retrieve_into<S: PropertySink>(
        &self,
        start: &MoRef,
        through_view: bool,
        specs: &[(&str, &[&str])],
        sink: &mut S,
    ) -> Result<(), VimError> {
        let pc = &self.content.property_collector;
        let mut token = self.invoke_with(
            "RetrievePropertiesEx",
            pc,
            |b| {
                b.open("specSet", |b| {
                    for (kind, paths) in specs {
                        b.open("propSet", |b| {
                            b.text("type", kind);
                            for p in *paths {
                                b.text("pathSet", p);
                            }
                        });
                    }
                    b.open("objectSet", |b| {
                        b.moref("obj", start);
                        if through_view {
                            b.text("skip", "true");
                            b.open_typed("selectSet", Some("TraversalSpec"), |b| {
                                b.text("type", "ContainerView");
                                b.text("path", "view");
                                b.text("skip", "false");
                            });
                        } else {
                            b.text("skip", "false");
                        }
                    });
                });
                b.open("options", |_| {});
            },
            |p, e| read_retrieve_result(p, e, sink),
        )?;
        while let Some(t) = token.take() {
            token = self.invoke_with(
                "ContinueRetrievePropertiesEx",
                pc,
                |b| b.text("token", &t),
                |p, e| read_retrieve_result(p, e, sink),
            )?;
        }
        Ok(())
    }

    /// Properties of every `kind` object under `container`, through one ContainerView.
    pub fn retrieve_all(
        &self,
        container: &MoRef,
        kind: &str,
        paths: &[&str],
    ) -> Result<Vec<ObjectContent>, VimError> {
        let view = self.container_view(container, kind)?;
        let r = self.retrieve(&view, true, kind, paths);
        self.destroy_view(&view);
        r
    }

    /// Properties of one object.
    pub fn retrieve_one(&self, obj: &MoRef, paths: &[&str]) -> Result<ObjectContent, VimError> {
        self.retrieve(obj, false, &obj.kind, paths)?
            .into_iter()
            .next()
            .ok_or_else(|| VimError::Missing(format!("{} {}", obj.kind, obj.value)))
    }

    /// Polls a task until it succeeds (its `info.result`) or fails.
    pub fn wait_task(&self, task: &MoRef) -> Result<Option<Node>, VimError> {
        self.wait_task_on(task, None)
    }

    /// [`Session::wait_task`] for a task of the VM `vm.0`, whose pending question
    /// (`runtime.question`) is answered with its default choice when `vm.1`
    /// (libvirt's `auto_answer=1`), and fails the wait otherwise, as libvirt's driver.
    pub fn wait_task_on(
        &self,
        task: &MoRef,
        vm: Option<(&MoRef, bool)>,
    ) -> Result<Option<Node>, VimError> {
        const LIMIT: u64 = 600;
        let start = Instant::now();
        let mut delay = Duration::from_millis(10);
        loop {
            let o = self.retrieve_one(task, &["info.state", "info.error", "info.result"])?;
            match o.text("info.state") {
                Some("success") => return Ok(o.get("info.result").cloned()),
                Some("error") => {
                    let e = o.get("info.error");
                    let fault = e
                        .and_then(|e| e.child("fault"))
                        .and_then(|f| f.xsi_type.clone())
                        .unwrap_or_else(|| "Fault".to_string());
                    let message = e
                        .and_then(|e| e.text_of("localizedMessage"))
                        .unwrap_or("")
                        .to_string();
                    return Err(VimError::Task {
                        task: task.value.clone(),
                        fault,
                        message,
                    });
                }
                _ => {}
            }
            if let Some((vm, answer)) = vm {
                self.question(vm, answer)?;
            }
            if start.elapsed() > Duration::from_secs(LIMIT) {
                return Err(VimError::TaskTimeout(task.value.clone(), LIMIT));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(500));
        }
    }

    /// Handles a pending question of `vm`: answers its default choice (`answer`) or fails.
    fn question(&self, vm: &MoRef, answer: bool) -> Result<(), VimError> {
        let o = self.retrieve_one(vm, &["runtime.question"])?;
        let Some(q) = o.get("runtime.question") else {
            return Ok(());
        };
        let id = q.text_of("id").unwrap_or("").to_string();
        let text = q.text_of("text").unwrap_or("").to_string();
        let choice = q.child("choice");
        let default = choice
            .and_then(|c| c.text_of("defaultIndex"))
            .and_then(|i| i.parse::<usize>().ok())
            .unwrap_or(0);
        let key = choice
            .and_then(|c| c.children_named("choiceInfo").nth(default))
            .and_then(|c| c.text_of("key"))
            .map(str::to_string);
        match (answer, key) {
            (true, Some(key)) => {
                self.invoke("AnswerVM", vm, |b| {
                    b.text("questionId", &id);
                    b.text("answerChoice", &key);
                })?;
                Ok(())
            }
            _ => Err(VimError::Question(text)),
        }
    }

    /// Calls a `…_Task` method on a VM and waits for its task, handling questions.
    pub fn vm_task(
        &self,
        method: &str,
        vm: &MoRef,
        auto_answer: bool,
        args: impl Fn(&mut Body),
    ) -> Result<Option<Node>, VimError> {
        let r = self.invoke(method, vm, args)?;
        let task = need_moref(&r, "returnval")?;
        self.wait_task_on(&task, Some((vm, auto_answer)))
    }

    /// Calls a `…_Task` method and waits for its task.
    pub fn task(
        &self,
        method: &str,
        this: &MoRef,
        args: impl Fn(&mut Body),
    ) -> Result<Option<Node>, VimError> {
        let r = self.invoke(method, this, args)?;
        let task = need_moref(&r, "returnval")?;
        self.wait_task(&task)
    }

    pub fn power_on(&self, vm: &MoRef, auto_answer: bool) -> Result<(), VimError> {
        self.vm_task("PowerOnVM_Task", vm, auto_answer, |_| {})
            .map(drop)
    }

    pub fn power_off(&self, vm: &MoRef, auto_answer: bool) -> Result<(), VimError> {
        self.vm_task("PowerOffVM_Task", vm, auto_answer, |_| {})
            .map(drop)
    }

    pub fn suspend(&self, vm: &MoRef, auto_answer: bool) -> Result<(), VimError> {
        self.vm_task("SuspendVM_Task", vm, auto_answer, |_| {})
            .map(drop)
    }

    pub fn reset(&self, vm: &MoRef, auto_answer: bool) -> Result<(), VimError> {
        self.vm_task("ResetVM_Task", vm, auto_answer, |_| {})
            .map(drop)
    }

    pub fn shutdown_guest(&self, vm: &MoRef) -> Result<(), VimError> {
        self.invoke("ShutdownGuest", vm, |_| {}).map(drop)
    }

    pub fn reboot_guest(&self, vm: &MoRef) -> Result<(), VimError> {
        self.invoke("RebootGuest", vm, |_| {}).map(drop)
    }

    /// `SearchIndex.FindByUuid` of a virtual machine (BIOS UUID) in `datacenter`.
    pub fn find_vm_by_uuid(
        &self,
        datacenter: &MoRef,
        uuid: &str,
    ) -> Result<Option<MoRef>, VimError> {
        let r = self.invoke("FindByUuid", &self.content.search_index, |b| {
            b.moref("datacenter", datacenter);
            b.text("uuid", uuid);
            b.text("vmSearch", "true");
        })?;
        Ok(r.child("returnval").and_then(Node::moref))
    }

    /// `ReconfigVM_Task` with `uuid`, `memoryMB` and/or `numCPUs`.
    pub fn reconfigure(
        &self,
        vm: &MoRef,
        uuid: Option<&str>,
        memory_mb: Option<u64>,
        num_cpus: Option<u32>,
    ) -> Result<(), VimError> {
        self.task("ReconfigVM_Task", vm, |b| {
            b.open("spec", |b| {
                if let Some(u) = uuid {
                    b.text("uuid", u);
                }
                if let Some(n) = num_cpus {
                    b.text("numCPUs", &n.to_string());
                }
                if let Some(m) = memory_mb {
                    b.text("memoryMB", &m.to_string());
                }
            });
        })
        .map(drop)
    }

    /// `RegisterVM_Task` of the `.vmx` at the datastore path `path`; the new VM.
    pub fn register_vm(
        &self,
        folder: &MoRef,
        path: &str,
        name: &str,
        pool: &MoRef,
        host: Option<&MoRef>,
    ) -> Result<MoRef, VimError> {
        let r = self.task("RegisterVM_Task", folder, |b| {
            b.text("path", path);
            b.text("name", name);
            b.text("asTemplate", "false");
            b.moref("pool", pool);
            if let Some(h) = host {
                b.moref("host", h);
            }
        })?;
        r.as_ref()
            .and_then(Node::moref)
            .ok_or_else(|| VimError::Missing("RegisterVM_Task info.result".into()))
    }

    pub fn unregister_vm(&self, vm: &MoRef) -> Result<(), VimError> {
        self.invoke("UnregisterVM", vm, |_| {}).map(drop)
    }

    /// `CreateSnapshot_Task`; the new snapshot.
    pub fn create_snapshot(
        &self,
        vm: &MoRef,
        name: &str,
        description: &str,
        memory: bool,
    ) -> Result<Option<MoRef>, VimError> {
        let r = self.task("CreateSnapshot_Task", vm, |b| {
            b.text("name", name);
            b.text("description", description);
            b.text("memory", if memory { "true" } else { "false" });
            b.text("quiesce", "false");
        })?;
        Ok(r.as_ref().and_then(Node::moref))
    }

    pub fn revert_snapshot(&self, snapshot: &MoRef) -> Result<(), VimError> {
        self.task("RevertToSnapshot_Task", snapshot, |_| {})
            .map(drop)
    }

    pub fn remove_snapshot(&self, snapshot: &MoRef, children: bool) -> Result<(), VimError> {
        self.task("RemoveSnapshot_Task", snapshot, |b| {
            b.text("removeChildren", if children { "true" } else { "false" });
        })
        .map(drop)
    }

    /// Whether the host's autostart is enabled, and the `startAction` of `vm` in the
    /// host's `HostAutoStartManager` configuration.
    pub fn autostart_of(
        &self,
        manager: &MoRef,
        vm: &MoRef,
    ) -> Result<(bool, Option<String>), VimError> {
        let o = self.retrieve_one(manager, &["config"])?;
        let Some(c) = o.get("config") else {
            return Ok((false, None));
        };
        let enabled = c.path("defaults/enabled").map(|e| e.text.trim()) == Some("true");
        let action = c
            .children_named("powerInfo")
            .find(|p| p.child("key").and_then(Node::moref).as_ref() == Some(vm))
            .and_then(|p| p.text_of("startAction"))
            .map(str::to_string);
        Ok((enabled, action))
    }

    /// `ReconfigureAutostart`: `vm` starts with the host (`powerOn`) or not (`none`); enabling
    /// also enables the host's autostart, as libvirt's driver does.
    pub fn set_autostart(&self, manager: &MoRef, vm: &MoRef, on: bool) -> Result<(), VimError> {
        self.invoke("ReconfigureAutostart", manager, |b| {
            b.open("spec", |b| {
                if on {
                    b.open("defaults", |b| b.text("enabled", "true"));
                }
                b.open("powerInfo", |b| {
                    b.moref("key", vm);
                    b.text("startOrder", "-1");
                    b.text("startDelay", "-1");
                    b.text("waitForHeartbeat", "systemDefault");
                    b.text("startAction", if on { "powerOn" } else { "none" });
                    b.text("stopDelay", "-1");
                    b.text("stopAction", "systemDefault");
                });
            });
        })
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrieve_answers_read_as_they_stream() {
        // as vCenter writes it: prefixed envelope, xsi:type on values, a token, a
        // missingSet, an array value, whitespace between elements
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Header/>
<soapenv:Body>
<RetrievePropertiesExResponse xmlns="urn:vim25"><returnval>
  <token>tok-1</token>
  <objects><obj type="VirtualMachine">vm-42</obj>
    <propSet><name>name</name><val xsi:type="xsd:string">a &amp; b</val></propSet>
    <propSet><name>config.hardware.memoryMB</name><val xsi:type="xsd:int">2048</val></propSet>
    <propSet><name>host</name><val xsi:type="ArrayOfManagedObjectReference"><ManagedObjectReference type="HostSystem">host-1</ManagedObjectReference><ManagedObjectReference type="HostSystem">host-2</ManagedObjectReference></val></propSet>
    <missingSet><path>config.uuid</path><fault><fault xsi:type="NoPermission"/></fault></missingSet>
  </objects>
  <objects><obj type="VirtualMachine">vm-43</obj><propSet><name>name</name><val><![CDATA[c<d]]></val></propSet></objects>
</returnval></RetrievePropertiesExResponse>
</soapenv:Body></soapenv:Envelope>"#;
        let mut p = Pull::new(doc.as_bytes());
        let e = p.body().unwrap();
        assert_eq!(p.name(), "RetrievePropertiesExResponse");
        let mut c = Contents::default();
        let token = read_retrieve_result(&mut p, e, &mut c).unwrap();
        let objs = c.0;
        assert_eq!(token.as_deref(), Some("tok-1"));
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0].obj, MoRef::new("VirtualMachine", "vm-42"));
        assert_eq!(objs[0].text("name"), Some("a & b"));
        assert_eq!(objs[0].num("config.hardware.memoryMB"), Some(2048));
        assert_eq!(
            objs[0]
                .get("config.hardware.memoryMB")
                .unwrap()
                .xsi_type
                .as_deref(),
            Some("int")
        );
        let hosts: Vec<_> = objs[0]
            .get("host")
            .unwrap()
            .children
            .iter()
            .filter_map(Node::moref)
            .collect();
        assert_eq!(hosts.len(), 2);
        assert_eq!(objs[0].get("config.uuid"), None);
        assert_eq!(objs[1].text("name"), Some("c<d"));
        // an empty answer (no objects matched) and a vcsim one (no prefixes, no types)
        let empty = r#"<Envelope><Body><RetrievePropertiesExResponse/></Body></Envelope>"#;
        let mut p = Pull::new(empty.as_bytes());
        let e = p.body().unwrap();
        assert!(e);
        let mut c = Contents::default();
        assert_eq!(read_retrieve_result(&mut p, e, &mut c).unwrap(), None);
        assert!(c.0.is_empty());
        let vcsim = r#"<Envelope><Body><RetrievePropertiesExResponse><returnval><objects><obj type="VirtualMachine">vm-1</obj><propSet><name>runtime.powerState</name><val>poweredOn</val></propSet></objects></returnval></RetrievePropertiesExResponse></Body></Envelope>"#;
        let mut p = Pull::new(vcsim.as_bytes());
        let e = p.body().unwrap();
        let mut c = Contents::default();
        assert_eq!(read_retrieve_result(&mut p, e, &mut c).unwrap(), None);
        assert_eq!(c.0[0].text("runtime.powerState"), Some("poweredOn"));
        // a document cut short is an error, not a partial list
        let cut = &vcsim[..vcsim.len() - 60];
        let mut p = Pull::new(cut.as_bytes());
        let e = p.body().unwrap();
        assert!(read_retrieve_result(&mut p, e, &mut Contents::default()).is_err());
    }
}
