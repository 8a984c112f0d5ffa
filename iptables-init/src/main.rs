//! `ferry-iptables`: the init-container command that redirects a pod's traffic to the sidecar.
//!
//! Capture is the subject of its own issue; until it lands this binary refuses to run rather
//! than pretend to have set anything up.
fn main() {
    eprintln!("ferry-iptables: traffic capture is not implemented yet; no rules were changed");
    std::process::exit(2);
}
