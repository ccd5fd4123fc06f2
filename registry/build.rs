//! Records the target triple, which packages name and installs match.
fn main() {
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".into());
    println!("cargo:rustc-env=RVIRT_REGISTRY_TARGET={target}");
}
