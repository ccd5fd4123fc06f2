//! Typed calls of the vSphere API (`urn:vim25`) over one session: each call writes its own
//! arguments ([`Body`]) and reads its own answer. A call answered `NotAuthenticated` logs
//! in again (the session expired on the server) and is retried once.

use crate::soap::{Body, Client, MoRef, Node, SoapError};
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

/// A logged-in session.
#[derive(Debug)]
pub struct Session {
    pub client: Client,
    pub content: ServiceContent,
    credentials: Mutex<(String, String)>,
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
        let pc = &self.content.property_collector;
        let r = self.invoke("RetrievePropertiesEx", pc, |b| {
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
        })?;
        let mut out = Vec::new();
        let returnval = |r: Node| r.children.into_iter().find(|c| c.name == "returnval");
        let mut ret = returnval(r);
        while let Some(rv) = ret.take() {
            let token = rv.text_of("token").map(str::to_string);
            for o in rv.children.into_iter().filter(|c| c.name == "objects") {
                let Some(obj) = o.child("obj").and_then(Node::moref) else {
                    continue;
                };
                let props = o
                    .children
                    .into_iter()
                    .filter(|c| c.name == "propSet")
                    .filter_map(|p| {
                        let name = p.text_of("name")?.to_string();
                        let val = p.children.into_iter().find(|c| c.name == "val")?;
                        Some((name, val))
                    })
                    .collect();
                out.push(ObjectContent { obj, props });
            }
            if let Some(token) = token {
                let r = self.invoke("ContinueRetrievePropertiesEx", pc, |b| {
                    b.text("token", &token);
                })?;
                ret = returnval(r);
            }
        }
        Ok(out)
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
