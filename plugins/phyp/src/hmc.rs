//! The HMC commands this driver sends, and the parsers of their answers.
//!
//! The commands are those of the HMC command line (`lssyscfg`, `lshwres`, `chsysstate`,
//! `mksyscfg`, `chsyscfg`, `rmsyscfg`) in the forms libvirt's phyp driver sent them: `-F`
//! picks comma-separated fields, `--filter lpar_names=`/`lpar_ids=` narrows a listing.

use rvirt_sdk::abi::state;

/// One LPAR as `lssyscfg -r lpar -F name,lpar_id,state` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lpar {
    pub name: String,
    pub id: i32,
    /// The HMC state (`Running`, `Not Activated`, `Open Firmware`...).
    pub state: String,
}

/// An answer the driver cannot read.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    #[error("line '{line}' of the HMC's answer to '{command}' is not {what}")]
    Line {
        command: String,
        line: String,
        what: &'static str,
    },
}

/// The fields of an LPAR listing.
pub const LPAR_FIELDS: &str = "name,lpar_id,state";

/// `lssyscfg -r sys -F name`: the managed systems of the HMC.
pub fn list_systems() -> String {
    "lssyscfg -r sys -F name".to_string()
}

/// How an LPAR listing is narrowed.
#[derive(Debug, Clone, Copy)]
pub enum Filter<'a> {
    All,
    Name(&'a str),
    Id(i32),
}

/// `lssyscfg -r lpar -m SYS -F name,lpar_id,state [--filter ...]`.
pub fn list_lpars(system: &str, filter: Filter<'_>) -> String {
    let mut c = format!("lssyscfg -r lpar -m {system} -F {LPAR_FIELDS}");
    match filter {
        Filter::All => {}
        Filter::Name(n) => c.push_str(&format!(" --filter lpar_names={n}")),
        Filter::Id(id) => c.push_str(&format!(" --filter lpar_ids={id}")),
    }
    c
}

/// `lshwres -r mem -m SYS --level lpar -F curr_mem,curr_max_mem --filter lpar_ids=ID`
/// (MB).
pub fn memory(system: &str, id: i32) -> String {
    format!(
        "lshwres -r mem -m {system} --level lpar -F curr_mem,curr_max_mem --filter lpar_ids={id}"
    )
}

/// `lshwres -r proc -m SYS --level lpar -F curr_procs,curr_max_procs --filter lpar_ids=ID`.
pub fn procs(system: &str, id: i32) -> String {
    format!(
        "lshwres -r proc -m {system} --level lpar -F curr_procs,curr_max_procs --filter lpar_ids={id}"
    )
}

/// `lshwres -r mem -m SYS --level sys -F configurable_sys_mem` (MB).
pub fn system_memory(system: &str) -> String {
    format!("lshwres -r mem -m {system} --level sys -F configurable_sys_mem")
}

/// `lshwres -r proc -m SYS --level sys -F configurable_sys_proc_units`.
pub fn system_procs(system: &str) -> String {
    format!("lshwres -r proc -m {system} --level sys -F configurable_sys_proc_units")
}

/// `chsysstate -m SYS -r lpar -o on --id ID -f PROFILE`: activates the LPAR with its
/// profile (named as the LPAR, as [`create`] makes it).
pub fn start(system: &str, id: i32, profile: &str) -> String {
    format!("chsysstate -m {system} -r lpar -o on --id {id} -f {profile}")
}

/// `chsysstate -m SYS -r lpar -o shutdown --id ID [--immed] [--restart]`: the operating
/// system's shutdown (delayed), or an immediate stop, or an immediate restart.
pub fn shutdown(system: &str, id: i32, immed: bool, restart: bool) -> String {
    let mut c = format!("chsysstate -m {system} -r lpar -o shutdown --id {id}");
    if immed {
        c.push_str(" --immed");
    }
    if restart {
        c.push_str(" --restart");
    }
    c
}

/// What a new LPAR gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LparConfig {
    pub name: String,
    /// Desired (and minimum) memory, MB.
    pub memory_mb: u64,
    /// Maximum memory, MB.
    pub max_memory_mb: u64,
    /// Desired processors.
    pub procs: u32,
    /// Maximum processors.
    pub max_procs: u32,
}

/// `mksyscfg -r lpar -m SYS -i "name=...,profile_name=...,..."`: a new AIX/Linux LPAR with
/// dedicated processors and a default profile named as the LPAR.
pub fn create(system: &str, c: &LparConfig) -> String {
    format!(
        "mksyscfg -r lpar -m {system} -i \"name={n},profile_name={n},lpar_env=aixlinux,min_mem={m},desired_mem={m},max_mem={mx},proc_mode=ded,min_procs=1,desired_procs={p},max_procs={px}\"",
        n = c.name,
        m = c.memory_mb,
        mx = c.max_memory_mb,
        p = c.procs,
        px = c.max_procs,
    )
}

/// `chsyscfg -r prof -m SYS -i "name=PROFILE,lpar_name=NAME,..."`: a defined LPAR's new
/// memory and processors (taking effect at its next activation).
pub fn change(system: &str, c: &LparConfig) -> String {
    format!(
        "chsyscfg -r prof -m {system} -i \"name={n},lpar_name={n},min_mem={m},desired_mem={m},max_mem={mx},desired_procs={p},max_procs={px}\"",
        n = c.name,
        m = c.memory_mb,
        mx = c.max_memory_mb,
        p = c.procs,
        px = c.max_procs,
    )
}

/// `rmsyscfg -r lpar -m SYS --id ID`.
pub fn remove(system: &str, id: i32) -> String {
    format!("rmsyscfg -r lpar -m {system} --id {id}")
}

/// Whether an answer says the filter matched nothing (the HMC exits 1 with this).
pub fn no_results(text: &str) -> bool {
    text.contains("No results were found")
}

/// The lines of an `lssyscfg -r lpar -F name,lpar_id,state` answer.
pub fn parse_lpars(command: &str, text: &str) -> Result<Vec<Lpar>, ParseError> {
    if no_results(text) {
        return Ok(Vec::new());
    }
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let bad = || ParseError::Line {
                command: command.to_string(),
                line: l.to_string(),
                what: "name,lpar_id,state",
            };
            let mut it = l.splitn(3, ',');
            let (Some(name), Some(id), Some(st)) = (it.next(), it.next(), it.next()) else {
                return Err(bad());
            };
            Ok(Lpar {
                name: name.to_string(),
                id: id.trim().parse().map_err(|_| bad())?,
                state: st.trim().to_string(),
            })
        })
        .collect()
}

/// The two numbers of an `lshwres ... -F a,b` answer.
pub fn parse_pair(command: &str, text: &str) -> Result<(u64, u64), ParseError> {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    let bad = || ParseError::Line {
        command: command.to_string(),
        line: line.to_string(),
        what: "two numbers",
    };
    let (a, b) = line.split_once(',').ok_or_else(bad)?;
    Ok((
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    ))
}

/// The libvirt state and reason of an HMC LPAR state.
pub fn state_reason(hmc: &str) -> (i32, i32) {
    match hmc {
        // VIR_DOMAIN_RUNNING_BOOTED: the partition (or its firmware) runs.
        "Running" | "Open Firmware" => (state::RUNNING, 1),
        // VIR_DOMAIN_RUNNING_UNKNOWN: activation in progress.
        "Starting" => (state::RUNNING, 0),
        // VIR_DOMAIN_SHUTDOWN_UNKNOWN
        "Shutting Down" => (state::SHUTDOWN, 0),
        // VIR_DOMAIN_SHUTOFF_UNKNOWN
        "Not Activated" => (state::SHUTOFF, 0),
        // VIR_DOMAIN_CRASHED_UNKNOWN
        "Error" => (state::CRASHED, 0),
        // Not Available, Hardware Discovery, Migrating...
        _ => (state::NOSTATE, 0),
    }
}

/// Whether an HMC name can go into a command line unquoted.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 47
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines() {
        assert_eq!(
            list_lpars("SYS1", Filter::Name("lp1")),
            "lssyscfg -r lpar -m SYS1 -F name,lpar_id,state --filter lpar_names=lp1"
        );
        assert_eq!(
            shutdown("SYS1", 3, true, true),
            "chsysstate -m SYS1 -r lpar -o shutdown --id 3 --immed --restart"
        );
        let c = LparConfig {
            name: "lp9".into(),
            memory_mb: 1024,
            max_memory_mb: 2048,
            procs: 2,
            max_procs: 4,
        };
        assert_eq!(
            create("S", &c),
            "mksyscfg -r lpar -m S -i \"name=lp9,profile_name=lp9,lpar_env=aixlinux,min_mem=1024,desired_mem=1024,max_mem=2048,proc_mode=ded,min_procs=1,desired_procs=2,max_procs=4\""
        );
    }

    #[test]
    fn answers() {
        let l = parse_lpars("x", "vios1,1,Running\nlp2,2,Not Activated\n").expect("parses");
        assert_eq!(l[1].name, "lp2");
        assert_eq!(l[1].id, 2);
        assert_eq!(state_reason(&l[1].state), (state::SHUTOFF, 0));
        assert!(
            parse_lpars("x", "No results were found.\n")
                .unwrap()
                .is_empty()
        );
        let e = parse_lpars("cmd", "oops").expect_err("bad");
        assert_eq!(
            e.to_string(),
            "line 'oops' of the HMC's answer to 'cmd' is not name,lpar_id,state"
        );
        assert_eq!(parse_pair("x", "1024,2048\n").unwrap(), (1024, 2048));
        assert!(parse_pair("x", "1024").is_err());
        assert_eq!(state_reason("Open Firmware"), (state::RUNNING, 1));
        assert_eq!(state_reason("Error"), (state::CRASHED, 0));
        assert_eq!(state_reason("Not Available"), (state::NOSTATE, 0));
        assert!(valid_name("lp-1.a_b") && !valid_name("a b") && !valid_name("-x"));
    }
}
