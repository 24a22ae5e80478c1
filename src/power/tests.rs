use super::reply::*;
use super::{BootOverride, PowerState};

#[test]
fn redfish_bodies_are_read_and_anything_else_is_an_error() {
    let members = br#"{"Members":[{"@odata.id":"/redfish/v1/Systems/a"}],"Members@odata.count":1}"#;
    assert_eq!(redfish_members(members).unwrap(), ["/redfish/v1/Systems/a"]);
    let system = br#"{"PowerState":"Off","Boot":{"BootSourceOverrideEnabled":"Continuous","BootSourceOverrideTarget":"Pxe"}}"#;
    assert_eq!(
        redfish_system(system).unwrap(),
        (PowerState::Off, BootOverride::PxeContinuous)
    );
    let once = br#"{"PowerState":"On","Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideTarget":"Pxe"}}"#;
    assert_eq!(
        redfish_system(once).unwrap(),
        (PowerState::On, BootOverride::PxeOnce)
    );
    let hdd = br#"{"PowerState":"PoweringOn","Boot":{"BootSourceOverrideEnabled":"Once","BootSourceOverrideTarget":"Hdd"}}"#;
    assert_eq!(
        redfish_system(hdd).unwrap(),
        (
            PowerState::Other("PoweringOn".into()),
            BootOverride::Other("Hdd (Once)".into())
        )
    );
    for bad in [
        &b""[..],
        b"<html>",
        b"{}",
        br#"{"Members":[{"id":1}]}"#,
        br#"{"PowerState":3}"#,
        br#"[1,2]"#,
    ] {
        assert!(
            redfish_members(bad).is_err() || redfish_system(bad).is_err(),
            "{bad:?}"
        );
    }
    assert!(redfish_system(br#"{"PowerState":3}"#).is_err());
}

#[test]
fn ipmitool_text_is_read_and_anything_else_is_an_error() {
    assert_eq!(ipmi_power("Chassis Power is on\n").unwrap(), PowerState::On);
    assert_eq!(
        ipmi_power("Chassis Power is off\n").unwrap(),
        PowerState::Off
    );
    assert!(ipmi_power("Error: Unable to establish IPMI v2 / RMCP+ session\n").is_err());
    let flags = "Boot parameter version: 1\nBoot parameter 5 is valid/unlocked\nBoot parameter data: c004000000\n Boot Flags :\n   - Boot Flag Valid\n   - Options apply to all future boots\n   - BIOS PC Compatible (legacy) boot\n   - Boot Device Selector : Force PXE\n";
    assert_eq!(ipmi_boot_flags(flags).unwrap(), BootOverride::PxeContinuous);
    let once = flags.replace("all future boots", "only next boot");
    assert_eq!(ipmi_boot_flags(&once).unwrap(), BootOverride::PxeOnce);
    let none = flags
        .replace("Boot Flag Valid", "Boot Flag Invalid")
        .replace("Force PXE", "No override");
    assert_eq!(ipmi_boot_flags(&none).unwrap(), BootOverride::None);
    assert!(ipmi_boot_flags("garbage").is_err());
}

#[test]
fn a_password_file_others_may_read_is_refused_and_no_error_shows_the_password() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bmc.pass");
    std::fs::write(&file, "hunter2\nignored\n").unwrap();
    let source = crate::spec::PasswordSource::File(file.clone());
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = super::credentials::password(&source)
        .unwrap_err()
        .to_string();
    assert!(err.contains("may be read by others (mode 0644)"), "{err}");
    assert!(err.contains("chmod 0600"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(super::credentials::password(&source).unwrap(), "hunter2");
    let unset = crate::spec::PasswordSource::Env("BOOTFLEET_TEST_SURELY_UNSET".into());
    let err = super::credentials::password(&unset)
        .unwrap_err()
        .to_string();
    assert!(err.contains("BOOTFLEET_TEST_SURELY_UNSET"), "{err}");
}
