//! Fuzzes what bootfleet reads from BMCs: Redfish collection and system
//! bodies, and ipmitool's power and boot-flag text. Any input gives a value
//! or an error, never a panic.

#![no_main]

use bootfleet::power::reply;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = reply::redfish_members(data);
    let _ = reply::redfish_system(data);
    let text = String::from_utf8_lossy(data);
    let _ = reply::ipmi_power(&text);
    let _ = reply::ipmi_boot_flags(&text);
});
