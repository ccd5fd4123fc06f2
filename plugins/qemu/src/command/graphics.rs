//! Graphics and video: VNC displays (listen address, port allocation, passwords set
//! over QMP and never put on the command line) and the video devices.
//!
//! Architecture invariant: nothing here talks to QEMU except [`set_passwords`], which
//! the driver calls on a QEMU that has not run its guest yet; the only other host
//! contact is probing for a free VNC port.

use super::address::{Pci, place, with_pci};
use super::{BuildOptions, CommandError, attr, parse_num, push_device, set_alias};
use rvirt_xml::Element;
use serde_json::{Value, json};

/// The password of a graphics display (`<graphics passwd=...>`). QEMU starts with
/// `password=on` and no password, so nobody gets in until the driver sets it over QMP
/// ([`password_commands`]); the password itself is never on QEMU's command line.
#[derive(Clone, PartialEq, Eq)]
pub struct GraphicsPassword {
    /// The QMP protocol name (`vnc`).
    pub protocol: &'static str,
    /// The password.
    pub password: String,
    /// `passwdValidTo`, in seconds since the epoch (UTC).
    pub valid_to: Option<i64>,
}

impl std::fmt::Debug for GraphicsPassword {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphicsPassword")
            .field("protocol", &self.protocol)
            .field("password", &"<redacted>")
            .field("valid_to", &self.valid_to)
            .finish()
    }
}

/// The QMP commands that give each display its password, in order: `set_password`, then
/// `expire_password` (`now` if `passwdValidTo` has passed, its time if it has not,
/// `never` without one), as libvirt does. `now` is the current time in seconds since
/// the epoch.
pub fn password_commands(passwords: &[GraphicsPassword], now: i64) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    for p in passwords {
        out.push((
            "set_password",
            json!({"protocol": p.protocol, "password": p.password}),
        ));
        let time = match p.valid_to {
            None => "never".to_string(),
            Some(t) if t <= now => "now".to_string(),
            Some(t) => t.to_string(),
        };
        out.push((
            "expire_password",
            json!({"protocol": p.protocol, "time": time}),
        ));
    }
    out
}

/// Sets every password of [`password_commands`] over the monitor of a QEMU that has not
/// run its guest yet.
pub fn set_passwords(
    qmp: &rvirt_qmp::Qmp,
    passwords: &[GraphicsPassword],
) -> Result<(), CommandError> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    for (command, args) in password_commands(passwords, now) {
        qmp.execute(command, Some(args))
            .map_err(|source| CommandError::Password { command, source })?;
    }
    Ok(())
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(super) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `passwdValidTo` (`YYYY-MM-DDTHH:MM:SS`, UTC) in seconds since the epoch.
pub(super) fn parse_valid_to(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once('T')?;
    let num = |t: &str, max: i64| {
        (!t.is_empty() && t.chars().all(|c| c.is_ascii_digit()))
            .then(|| t.parse::<i64>().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let mut d = date.split('-');
    let (y, mo, da) = (
        num(d.next()?, 9999)?,
        num(d.next()?, 12)?,
        num(d.next()?, 31)?,
    );
    let mut t = time.split(':');
    let (h, mi, se) = (
        num(t.next()?, 23)?,
        num(t.next()?, 59)?,
        num(t.next()?, 60)?,
    );
    if d.next().is_some() || t.next().is_some() || mo == 0 || da == 0 {
        return None;
    }
    Some(days_from_civil(y, mo, da) * 86_400 + h * 3_600 + mi * 60 + se)
}

fn free_vnc_port() -> Option<u16> {
    (5900..6900u16).find(|p| std::net::TcpListener::bind(("0.0.0.0", *p)).is_ok())
}

/// The `-vnc` and `-spice` arguments, and the `-audiodev` of displays and sound cards.
/// Returns the port of each display, in order (put back into
/// the live definition after validation: post-parse rules turn an autoport's port into
/// -1), and the passwords to set over QMP.
pub(super) fn graphics(
    devs: &mut Element,
    opts: &BuildOptions,
    has_graphics: bool,
    name: &str,
    gfx_args: &mut Vec<String>,
) -> Result<(Vec<u16>, Vec<GraphicsPassword>), CommandError> {
    let mut vnc_ports = Vec::new();
    let mut passwords = Vec::new();
    let spice = devs
        .children_named("graphics")
        .any(|g| g.attr("type") == Some("spice"));
    if has_graphics || devs.child("sound").is_some() {
        gfx_args.push("-audiodev".into());
        gfx_args.push(if spice {
            r#"{"id":"audio1","driver":"spice"}"#.into()
        } else {
            "id=audio1,driver=none".into()
        });
    }
    for g in devs.children_named_mut("graphics") {
        let ty = g.attr("type").unwrap_or("").to_string();
        if ty == "spice" {
            vnc_ports.push(spice_display(g, opts, name, gfx_args)?);
            continue;
        }
        if ty != "vnc" {
            return Err(CommandError::Unsupported(format!(
                "graphics type '{ty}' is not supported (vnc and spice)"
            )));
        }
        let listen = g
            .attr("listen")
            .or_else(|| attr(g, &["listen"], "address"))
            .unwrap_or("127.0.0.1")
            .to_string();
        let auto = g.attr("autoport") == Some("yes") || g.attr("port").is_none_or(|p| p == "-1");
        let port: u16 = if auto {
            if opts.allocate_vnc {
                free_vnc_port().ok_or_else(|| {
                    CommandError::Unsupported("no free VNC port between 5900 and 6899".into())
                })?
            } else {
                5900
            }
        } else {
            g.attr("port")
                .and_then(parse_num)
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p >= 5900)
                .ok_or_else(|| {
                    CommandError::Invalid("VNC port must be -1 or at least 5900".into())
                })?
        };
        if auto {
            g.set_attr("autoport", "yes");
            g.set_attr("port", &port.to_string());
        }
        if g.attr("listen").is_none() {
            g.set_attr("listen", &listen);
        }
        vnc_ports.push(port);
        let host = if listen.contains(':') {
            format!("[{listen}]")
        } else {
            listen
        };
        let mut vnc = format!("{host}:{}", port - 5900);
        if let Some(pw) = g.attr("passwd") {
            let valid_to = match g.attr("passwdValidTo") {
                Some(v) => Some(parse_valid_to(v).ok_or_else(|| {
                    CommandError::Invalid(format!(
                        "graphics passwdValidTo '{v}' is not a time of the form YYYY-MM-DDTHH:MM:SS"
                    ))
                })?),
                None => None,
            };
            passwords.push(GraphicsPassword {
                protocol: "vnc",
                password: pw.to_string(),
                valid_to,
            });
            vnc.push_str(",password=on");
        }
        vnc.push_str(",audiodev=audio1");
        gfx_args.push("-vnc".into());
        gfx_args.push(vnc);
    }
    Ok((vnc_ports, passwords))
}

/// The `-spice` arguments of a SPICE display without TLS or password (a password is
/// refused: it could not be kept off the command line yet). Returns its port.
fn spice_display(
    g: &mut Element,
    opts: &BuildOptions,
    name: &str,
    gfx_args: &mut Vec<String>,
) -> Result<u16, CommandError> {
    if g.attr("passwd").is_some() {
        return Err(CommandError::Unsupported(
            "graphics type 'spice' with a password is not supported".into(),
        ));
    }
    if g.attr("tlsPort").is_some_and(|p| p != "-1")
        || g.attr("defaultMode").is_some_and(|m| m != "any")
        || g.children_named("channel").next().is_some()
        || g.child("gl")
            .is_some_and(|gl| gl.attr("enable") == Some("yes"))
    {
        return Err(CommandError::Unsupported(
            "graphics type 'spice' with TLS, channel modes or OpenGL is not supported".into(),
        ));
    }
    let mut o = String::new();
    match attr(g, &["listen"], "type") {
        Some("socket") => {
            let path = attr(g, &["listen"], "socket")
                .map(str::to_string)
                .unwrap_or_else(|| {
                    opts.channel_dir
                        .join(format!("{name}.spice.sock"))
                        .to_string_lossy()
                        .into_owned()
                });
            if let Some(l) = g.child_mut("listen") {
                l.set_attr("socket", &path);
            }
            o.push_str(&format!("unix=on,addr={}", path.replace(',', ",,")));
        }
        Some("none") => o.push_str("port=0"),
        _ => {}
    }
    if !o.is_empty() {
        o.push_str(",disable-ticketing=on,seamless-migration=on");
        gfx_args.push("-spice".into());
        gfx_args.push(o);
        return Ok(0);
    }
    let listen = g
        .attr("listen")
        .or_else(|| attr(g, &["listen"], "address"))
        .unwrap_or("127.0.0.1")
        .to_string();
    let auto = g.attr("autoport") == Some("yes") || g.attr("port").is_none_or(|p| p == "-1");
    let port: u16 = if auto {
        if opts.allocate_vnc {
            free_vnc_port().ok_or_else(|| {
                CommandError::Unsupported("no free SPICE port between 5900 and 6899".into())
            })?
        } else {
            5900
        }
    } else {
        g.attr("port")
            .and_then(parse_num)
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
            .ok_or_else(|| CommandError::Invalid("SPICE port must be -1 or a port".into()))?
    };
    if auto {
        g.set_attr("autoport", "yes");
        g.set_attr("port", &port.to_string());
    }
    if g.attr("listen").is_none() {
        g.set_attr("listen", &listen);
    }
    let mut o = format!("port={port},addr={listen}");
    for (elem, opt) in [
        ("image", "image-compression"),
        ("jpeg", "jpeg-wan-compression"),
        ("zlib", "zlib-glz-wan-compression"),
        ("playback", "playback-compression"),
    ] {
        if let Some(v) = attr(g, &[elem], "compression") {
            o.push_str(&format!(",{opt}={v}"));
        }
    }
    if let Some(v) = attr(g, &["streaming"], "mode") {
        o.push_str(&format!(",streaming-video={v}"));
    }
    // no password: anyone who reaches the address may connect, as with VNC
    o.push_str(",disable-ticketing=on,seamless-migration=on");
    gfx_args.push("-spice".into());
    gfx_args.push(o);
    Ok(port)
}

/// The video devices.
pub(super) fn video(
    pci: &mut Pci,
    devs: &mut Element,
    gfx_args: &mut Vec<String>,
) -> Result<(), CommandError> {
    let mut primary_done = false;
    for (k, v) in devs.children_named_mut("video").enumerate() {
        let model = attr(v, &["model"], "type").unwrap_or("vga").to_string();
        if model == "none" {
            continue;
        }
        let primary = !primary_done;
        primary_done = true;
        let alias = format!("video{k}");
        set_alias(v, &alias);
        let vga_mem = attr(v, &["model"], "vgamem")
            .and_then(parse_num)
            .unwrap_or(16384);
        let dev = match (model.as_str(), primary) {
            ("virtio", true) => obj! {"driver": "virtio-vga", "id": alias, "max_outputs": 1},
            ("virtio", false) => obj! {"driver": "virtio-gpu-pci", "id": alias, "max_outputs": 1},
            ("qxl", p) => {
                obj! {"driver": if p { "qxl-vga" } else { "qxl" }, "id": alias, "max_outputs": 1,
                "ram_size": attr(v, &["model"], "ram").and_then(parse_num).unwrap_or(65536) * 1024,
                "vram_size": attr(v, &["model"], "vram").and_then(parse_num).unwrap_or(65536) * 1024,
                "vram64_size_mb": 0, "vgamem_mb": vga_mem / 1024}
            }
            ("vga", _) => obj! {"driver": "VGA", "id": alias, "vgamem_mb": vga_mem / 1024},
            ("cirrus", _) => obj! {"driver": "cirrus-vga", "id": alias},
            ("bochs", _) => obj! {"driver": "bochs-display", "id": alias},
            (other, _) => {
                return Err(CommandError::Unsupported(format!(
                    "video model '{other}' is not supported"
                )));
            }
        };
        let b = place(pci, v, true)?;
        push_device(gfx_args, &with_pci(dev, b));
    }
    Ok(())
}
