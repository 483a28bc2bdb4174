//! The throwaway Samba AD DC starts, answers LDAP as Administrator, and stops by its PID.

use idsync_testbed::SambaDc;

#[test]
fn a_samba_domain_controller_starts_answers_and_stops() {
    let mut dc = SambaDc::start().expect("samba starts (scripts/test installs it)");
    let out = dc
        .tool("ldapsearch")
        .args([
            "-LLL",
            "-b",
            dc.base_dn(),
            "(sAMAccountName=Administrator)",
            "objectGUID",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("objectGUID"));
    let pid = dc.pid().expect("a pid");
    dc.stop();
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            // A zombie waits only for its reaper; it no longer serves.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| s.contains(") Z"))
        }
    );
}
