//! A load generator speaking libvirt's remote protocol straight over a unix socket.
//!
//! It opens N connections, keeps M calls in flight on each (the protocol's serial numbers
//! let a client pipeline calls), and reports the calls per second it got and, given the
//! daemon's process ids, the daemon's own CPU time per call (utime + stime from
//! `/proc/PID/stat`, the delta over the run divided by the calls answered). Unlike a
//! libvirt client library, which spends tens of system calls per call, this client costs
//! a few microseconds per call, so the daemon's limit is what gets measured.
//!
//! usage: rvirt-loadgen --socket PATH [--uri test:///default] [--conns 1,4] [--inflight 1,16]
//!        [--procs lookup,info,xmldesc,define,listall] [--domains 1000] [--duration 3]
//!        [--pid PID ...] [--label NAME]
//!
//! One JSON line per (procedure, connections, calls in flight) on stdout.

use anyhow::{Context, Result, bail};
use clap::Parser;
use rvirt_wire::protocol::{NonnullDomain, REMOTE_PROGRAM, REMOTE_VERSION};
use rvirt_wire::remote::{
    ConnectListAllDomainsArgs, ConnectListAllDomainsRet, ConnectOpenArgs, DomainArgs,
    DomainDefineXmlArgs, DomainFlagsArgs, DomainGetInfoRet, DomainGetXmlDescRet,
    DomainLookupByNameArgs, DomainRet,
};
use rvirt_wire::{Frame, Header, MessageType, Procedure, RemoteError, Status, frame, procs};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::io::{BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "libvirt remote protocol load generator")]
struct Args {
    /// The daemon's unix socket.
    #[arg(long)]
    socket: PathBuf,
    /// The URI each connection opens.
    #[arg(long, default_value = "test:///default")]
    uri: String,
    /// Connection counts to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    conns: Vec<usize>,
    /// Calls in flight per connection to measure (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    inflight: Vec<usize>,
    /// Procedures: lookup, info, xmldesc, define, listall (comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "lookup,info,xmldesc,define,listall"
    )]
    procs: Vec<Proc>,
    /// Domains defined before the runs (listAllDomains returns them), undefined after.
    #[arg(long, default_value_t = 1000)]
    domains: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3.0)]
    duration: f64,
    /// The domain the lookup, info and XMLDesc calls name.
    #[arg(long, default_value = "test")]
    domain: String,
    /// Daemon process ids whose CPU time is charged to the calls (summed), with their
    /// child processes (plugin host processes) as they are when a measurement starts.
    #[arg(long)]
    pid: Vec<u32>,
    /// A name for the daemon in the output.
    #[arg(long, default_value = "daemon")]
    label: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Proc {
    /// `virDomainLookupByName`
    Lookup,
    /// `virDomainGetInfo`
    Info,
    /// `virDomainGetXMLDesc`
    Xmldesc,
    /// `virDomainDefineXML` (redefining one domain per connection)
    Define,
    /// `virConnectListAllDomains` (all domains, with results)
    Listall,
}

impl Proc {
    fn name(self) -> &'static str {
        match self {
            Proc::Lookup => "lookupByName",
            Proc::Info => "getInfo",
            Proc::Xmldesc => "XMLDesc",
            Proc::Define => "define",
            Proc::Listall => "listAllDomains",
        }
    }
}

/// One protocol connection with a blocking socket.
struct Conn {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    serial: u32,
    /// The domain the per-domain calls name (looked up once).
    dom: NonnullDomain,
    /// This connection's number (the domain it redefines).
    index: usize,
}

impl Conn {
    fn connect(args: &Args, index: usize) -> Result<Conn> {
        let stream = UnixStream::connect(&args.socket)
            .with_context(|| format!("cannot connect to {}", args.socket.display()))?;
        let mut conn = Conn {
            reader: BufReader::with_capacity(256 * 1024, stream.try_clone()?),
            writer: stream,
            serial: 0,
            dom: NonnullDomain::default(),
            index,
        };
        conn.call::<procs::ConnectOpen>(&ConnectOpenArgs {
            name: Some(args.uri.clone()),
            flags: 0,
        })?;
        conn.dom = conn
            .call::<procs::DomainLookupByName>(&DomainLookupByNameArgs {
                name: args.domain.clone(),
            })
            .with_context(|| format!("cannot look up domain {}", args.domain))?
            .dom;
        Ok(conn)
    }

    /// One call, waiting for its reply.
    fn call<P: Procedure>(&mut self, args: &P::Args) -> Result<P::Ret> {
        self.serial += 1;
        let h = Header::call(
            REMOTE_PROGRAM,
            REMOTE_VERSION,
            P::PROC.number(),
            self.serial,
        );
        self.writer.write_all(&frame::encode(&h, args)?)?;
        let f = self.read()?;
        if f.header.serial != self.serial {
            bail!(
                "reply to serial {} while waiting for {}",
                f.header.serial,
                self.serial
            );
        }
        decode::<P::Ret>(&f)
    }

    /// Sends a call whose XDR body is `payload`, not waiting for the reply.
    fn send(&mut self, procedure: i32, payload: &[u8]) -> Result<()> {
        self.serial += 1;
        let h = Header::call(REMOTE_PROGRAM, REMOTE_VERSION, procedure, self.serial);
        self.writer.write_all(&frame::encode_raw(&h, payload)?)?;
        Ok(())
    }

    fn read(&mut self) -> Result<Frame> {
        loop {
            let f =
                frame::read_frame(&mut self.reader)?.context("the daemon closed the connection")?;
            if f.header.msg_type == MessageType::Reply {
                return Ok(f);
            }
            // events and keepalive messages are not replies
        }
    }
}

/// The reply's body, or the daemon's error.
fn decode<T: DeserializeOwned>(f: &Frame) -> Result<T> {
    if f.header.status != Status::Ok {
        let e: RemoteError = f.body().context("undecodable error reply")?;
        bail!(
            "call {} failed: {} (code {})",
            f.header.procedure,
            e.message.unwrap_or_default(),
            e.code
        );
    }
    Ok(f.body()?)
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    Ok(rvirt_wire::xdr::to_vec(v)?)
}

fn domain_xml(name: &str, n: usize) -> String {
    format!(
        "<domain type='test'><name>{name}</name>\
         <uuid>6c6f6164-6765-6e00-0000-{n:012x}</uuid>\
         <memory unit='KiB'>8192</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64'>hvm</type></os></domain>"
    )
}

/// The procedure number and XDR arguments of `proc` on `conn`.
fn call_for(proc: Proc, conn: &Conn) -> Result<(i32, Vec<u8>)> {
    let dom = conn.dom.clone();
    Ok(match proc {
        Proc::Lookup => (
            procs::DomainLookupByName::PROC.number(),
            encode(&DomainLookupByNameArgs { name: dom.name })?,
        ),
        Proc::Info => (
            procs::DomainGetInfo::PROC.number(),
            encode(&DomainArgs { dom })?,
        ),
        Proc::Xmldesc => (
            procs::DomainGetXmlDesc::PROC.number(),
            encode(&DomainFlagsArgs { dom, flags: 0 })?,
        ),
        Proc::Define => {
            let n = 0x10_0000 + conn.index;
            let xml = domain_xml(&format!("loadgen-def-{}", conn.index), n);
            (
                procs::DomainDefineXml::PROC.number(),
                encode(&DomainDefineXmlArgs { xml })?,
            )
        }
        Proc::Listall => (
            procs::ConnectListAllDomains::PROC.number(),
            encode(&ConnectListAllDomainsArgs {
                need_results: 1,
                flags: 0,
            })?,
        ),
    })
}

/// Checks a reply the way a client would use it (decoding it whole).
fn check(proc: Proc, f: &Frame) -> Result<()> {
    match proc {
        Proc::Lookup | Proc::Define => {
            decode::<DomainRet>(f)?;
        }
        Proc::Info => {
            decode::<DomainGetInfoRet>(f)?;
        }
        Proc::Xmldesc => {
            decode::<DomainGetXmlDescRet>(f)?;
        }
        Proc::Listall => {
            decode::<ConnectListAllDomainsRet>(f)?;
        }
    }
    Ok(())
}

/// Keeps `inflight` calls going on `conn` until `stop`; returns the replies received.
fn drive(
    conn: &mut Conn,
    proc: Proc,
    inflight: usize,
    start: &Barrier,
    stop: &AtomicBool,
) -> Result<u64> {
    let (number, payload) = call_for(proc, conn)?;
    start.wait();
    let mut outstanding = 0usize;
    let mut done = 0u64;
    for _ in 0..inflight {
        conn.send(number, &payload)?;
        outstanding += 1;
    }
    while outstanding > 0 {
        let f = conn.read()?;
        if f.header.procedure != number || f.header.serial > conn.serial {
            bail!(
                "unexpected reply (procedure {}, serial {})",
                f.header.procedure,
                f.header.serial
            );
        }
        check(proc, &f)?;
        outstanding -= 1;
        done += 1;
        if !stop.load(Ordering::Relaxed) {
            conn.send(number, &payload)?;
            outstanding += 1;
        }
    }
    Ok(done)
}

/// `pids` and their children (the plugin host processes of a daemon).
fn with_children(pids: &[u32]) -> Vec<u32> {
    let mut all = pids.to_vec();
    for pid in pids {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            all.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    all.sort_unstable();
    all.dedup();
    all
}

/// utime + stime of the processes, in seconds.
fn cpu_seconds(pids: &[u32]) -> Result<f64> {
    // USER_HZ: the unit of /proc/PID/stat times, 100 in Linux's ABI
    const TICKS: f64 = 100.0;
    let mut total = 0u64;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("cannot read /proc/{pid}/stat"))?;
        // the fields after the command name (which may hold spaces) in parentheses
        let rest = stat.rsplit_once(')').context("bad /proc stat")?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // field 3 (state) is fields[0]: utime is field 14, stime field 15
        let utime: u64 = fields.get(11).context("bad /proc stat")?.parse()?;
        let stime: u64 = fields.get(12).context("bad /proc stat")?.parse()?;
        total += utime + stime;
    }
    Ok(total as f64 / TICKS)
}

fn measure(
    args: &Args,
    conns: &mut [Conn],
    proc: Proc,
    inflight: usize,
) -> Result<serde_json::Value> {
    let start = Barrier::new(conns.len() + 1);
    let stop = AtomicBool::new(false);
    let calls = AtomicU64::new(0);
    let (elapsed, cpu) = std::thread::scope(|s| -> Result<(f64, f64)> {
        let handles: Vec<_> = conns
            .iter_mut()
            .map(|c| {
                let (start, stop, calls) = (&start, &stop, &calls);
                s.spawn(move || -> Result<()> {
                    let n = drive(c, proc, inflight, start, stop)?;
                    calls.fetch_add(n, Ordering::Relaxed);
                    Ok(())
                })
            })
            .collect();
        let pids = with_children(&args.pid);
        let cpu0 = cpu_seconds(&pids)?;
        start.wait();
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(args.duration));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join()
                .map_err(|_| anyhow::anyhow!("a connection thread panicked"))??;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        Ok((elapsed, cpu_seconds(&pids)? - cpu0))
    })?;
    let calls = calls.load(Ordering::Relaxed);
    let mut out = serde_json::json!({
        "label": args.label,
        "proc": proc.name(),
        "conns": conns.len(),
        "inflight": inflight,
        "calls": calls,
        "secs": (elapsed * 1000.0).round() / 1000.0,
        "calls_per_s": (calls as f64 / elapsed).round(),
        "latency_us": (conns.len() as f64 * inflight as f64 * elapsed * 1e7 / calls.max(1) as f64).round() / 10.0,
    });
    if !args.pid.is_empty() && calls > 0 {
        out["daemon_cpu_s"] = serde_json::json!(cpu);
        out["cpu_us_per_call"] = serde_json::json!((cpu * 1e7 / calls as f64).round() / 10.0);
    }
    Ok(out)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let mut setup = Conn::connect(&args, 0)?;
    for i in 0..args.domains {
        setup
            .call::<procs::DomainDefineXml>(&DomainDefineXmlArgs {
                xml: domain_xml(&format!("loadgen-{i}"), i),
            })
            .with_context(|| format!("cannot define domain loadgen-{i}"))?;
    }
    let result = run(&args);
    // leave the daemon as it was, even after a failed run
    let mut cleanup = |name: String| -> Result<()> {
        if let Ok(r) = setup.call::<procs::DomainLookupByName>(&DomainLookupByNameArgs { name }) {
            setup.call::<procs::DomainUndefine>(&DomainArgs { dom: r.dom })?;
        }
        Ok(())
    };
    for i in 0..args.domains {
        cleanup(format!("loadgen-{i}"))?;
    }
    let most = args.conns.iter().copied().max().unwrap_or(0);
    if args.procs.contains(&Proc::Define) {
        for i in 0..most {
            cleanup(format!("loadgen-def-{i}"))?;
        }
    }
    result
}

fn run(args: &Args) -> Result<()> {
    for &n in &args.conns {
        let mut conns = (0..n)
            .map(|i| Conn::connect(args, i))
            .collect::<Result<Vec<_>>>()?;
        for &inflight in &args.inflight {
            for &proc in &args.procs {
                let line = measure(args, &mut conns, proc, inflight).with_context(|| {
                    format!("{} with {n} connections, {inflight} in flight", proc.name())
                })?;
                println!("{line}");
            }
        }
    }
    Ok(())
}
