//! Reading what BMCs answer: Redfish JSON bodies and `ipmitool`'s text.
//! Pure, and fuzzed (`fuzz/fuzz_targets/bmc_reply.rs`): any input gives a
//! value or an error, never a panic.

use super::{BootOverride, PowerState};

/// The `@odata.id` of every member of a Redfish collection.
pub fn redfish_members(body: &[u8]) -> Result<Vec<String>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let members = v
        .get("Members")
        .and_then(|m| m.as_array())
        .ok_or("no `Members` list")?;
    members
        .iter()
        .map(|m| {
            m.get("@odata.id")
                .and_then(|id| id.as_str())
                .map(str::to_owned)
                .ok_or_else(|| "a member without `@odata.id`".to_owned())
        })
        .collect()
}

/// What a Redfish ComputerSystem says of its power and boot override.
pub fn redfish_system(body: &[u8]) -> Result<(PowerState, BootOverride), String> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let power = match v.get("PowerState").and_then(|p| p.as_str()) {
        Some("On") => PowerState::On,
        Some("Off") => PowerState::Off,
        Some(other) => PowerState::Other(clip(other)),
        None => return Err("no `PowerState`".into()),
    };
    let boot = v.get("Boot");
    let enabled = boot
        .and_then(|b| b.get("BootSourceOverrideEnabled"))
        .and_then(|e| e.as_str())
        .unwrap_or("Disabled");
    let target = boot
        .and_then(|b| b.get("BootSourceOverrideTarget"))
        .and_then(|t| t.as_str())
        .unwrap_or("None");
    let boot = match (enabled, target) {
        ("Disabled", _) | (_, "None") => BootOverride::None,
        ("Once", "Pxe") => BootOverride::PxeOnce,
        ("Continuous", "Pxe") => BootOverride::PxeContinuous,
        (e, t) => BootOverride::Other(clip(&format!("{t} ({e})"))),
    };
    Ok((power, boot))
}

/// `Chassis Power is on` / `off`.
pub fn ipmi_power(out: &str) -> Result<PowerState, String> {
    let line = out
        .lines()
        .find(|l| l.starts_with("Chassis Power is "))
        .ok_or_else(|| format!("no power state in {:?}", clip(out)))?;
    Ok(match line.trim_start_matches("Chassis Power is ").trim() {
        "on" => PowerState::On,
        "off" => PowerState::Off,
        other => PowerState::Other(clip(other)),
    })
}

/// `ipmitool chassis bootparam get 5`: the boot flags.
pub fn ipmi_boot_flags(out: &str) -> Result<BootOverride, String> {
    let mut valid = None;
    let mut persistent = false;
    let mut device = None;
    for line in out.lines() {
        let l = line.trim().trim_start_matches("- ").trim();
        match l {
            "Boot Flag Valid" => valid = Some(true),
            "Boot Flag Invalid" => valid = Some(false),
            "Options apply to all future boots" => persistent = true,
            _ => {}
        }
        if let Some(d) = l.strip_prefix("Boot Device Selector :") {
            device = Some(d.trim().to_owned());
        }
    }
    let valid = valid.ok_or_else(|| format!("no boot flags in {:?}", clip(out)))?;
    let device = device.unwrap_or_default();
    Ok(match (valid, device.as_str()) {
        (false, _) | (_, "No override") => BootOverride::None,
        (true, "Force PXE") if persistent => BootOverride::PxeContinuous,
        (true, "Force PXE") => BootOverride::PxeOnce,
        (true, other) => BootOverride::Other(clip(other)),
    })
}

/// At most 60 characters of what a BMC said, for messages.
fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}
