//! `rvirt-tck PLUGIN_FILE`: the conformance kit's command. One line per check, a summary,
//! exit status 0 when conformant, 1 when a check failed, 2 on usage errors.
//!
//! The checks run in a child process (this binary again, with `--in-process`), so a plugin
//! that aborts the process is reported as a failure instead of killing the kit.

use std::{io::Write, path::PathBuf, process::ExitCode};

const USAGE: &str =
    "usage: rvirt-tck [--uri URI] [--domain-xml FILE] [--skip CHECK]... PLUGIN_FILE...

Checks each plugin file against the contract of its kind (hypervisor, storage, network):
one line per check (PASS, FAIL, SKIP), a summary, exit status 1 when a check failed.
  --uri URI          the URI to open (default SCHEME:///)
  --domain-xml FILE  a domain document the hypervisor accepts (default: a minimal one)
  --skip CHECK       do not run CHECK (or every check under the prefix, e.g. hv.panic-caught)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut opts = rvirt_tck::Options::default();
    let mut files = Vec::new();
    let mut in_process = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--uri" => opts.uri = it.next().cloned(),
            "--domain-xml" => match it.next().map(std::fs::read_to_string) {
                Some(Ok(x)) => opts.domain_xml = Some(x),
                _ => {
                    eprintln!("rvirt-tck: --domain-xml needs a readable file\n{USAGE}");
                    return ExitCode::from(2);
                }
            },
            "--skip" => opts.skip.extend(it.next().cloned()),
            "--in-process" => in_process = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            f if !f.starts_with('-') => files.push(PathBuf::from(f)),
            other => {
                eprintln!("rvirt-tck: unknown option {other}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    if files.is_empty() {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let mut all_ok = true;
    for f in files {
        let ok = if in_process {
            run_here(&f, &opts)
        } else {
            run_child(&f, &args)
        };
        all_ok &= ok;
    }
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run_here(file: &std::path::Path, opts: &rvirt_tck::Options) -> bool {
    println!("rvirt-tck {}", file.display());
    let report = rvirt_tck::run(file, opts, &mut |c| {
        println!("{c}");
        let _ = std::io::stdout().flush();
    });
    println!("{}", report.summary());
    report.ok()
}

/// Runs the checks of `file` in a child process and reports an abnormal end.
fn run_child(file: &std::path::Path, args: &[String]) -> bool {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("rvirt-tck: cannot find myself: {e}");
            return false;
        }
    };
    // The same options, this one file.
    let mut child_args: Vec<String> = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--uri" | "--domain-xml" | "--skip" => {
                child_args.push(a.clone());
                child_args.extend(it.next().cloned());
            }
            _ => {}
        }
    }
    child_args.push("--in-process".into());
    child_args.push(file.display().to_string());
    let status = std::process::Command::new(exe).args(&child_args).status();
    match status {
        Ok(s) if s.success() => true,
        Ok(s) if s.code() == Some(1) => false,
        Ok(s) => {
            use std::os::unix::process::ExitStatusExt;
            println!(
                "FAIL process: the checks ended abnormally ({}): the plugin aborted the process, e.g. a panic crossed the ABI unguarded",
                match s.signal() {
                    Some(sig) => format!("signal {sig}"),
                    None => format!("exit status {:?}", s.code()),
                }
            );
            println!("NOT conformant");
            false
        }
        Err(e) => {
            println!("FAIL process: cannot run the checks: {e}");
            false
        }
    }
}
