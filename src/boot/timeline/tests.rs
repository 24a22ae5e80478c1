use super::*;

pub(super) fn ev(at: u64, stage: Stage, step: Step) -> Event {
    Event {
        mac: Mac([2, 0, 0, 0, 0, 1]),
        at,
        stage,
        step,
        asked: format!("{}-file", stage.name()),
        detail: format!("{} at {at}", stage.name()),
        ip: None,
        arch: None,
    }
}

/// A request that arrives at `at` and is served at `done`.
fn fetch(t: &mut Timeline, at: u64, done: u64, stage: Stage) {
    t.apply(&ev(at, stage, Step::Asked));
    t.apply(&ev(done, stage, Step::Served));
}

pub(super) fn firmware(at: u64, step: Step) -> Event {
    Event {
        arch: Some("bios".into()),
        asked: "DHCPDISCOVER".into(),
        ..ev(at, Stage::Dhcp, step)
    }
}

fn not_found(at: u64, stage: Stage) -> Event {
    ev(
        at,
        stage,
        Step::Failed {
            answer: "not found (404)".into(),
            fix: None,
        },
    )
}

fn ms(t: &Timeline, now: u64) -> Vec<(Stage, u64)> {
    t.durations(now)
        .into_iter()
        .map(|(s, _, ms)| (s, ms))
        .collect()
}

#[test]
fn each_stage_lasts_from_its_request_to_its_answer_and_the_kernel_boots_in_its_own() {
    let mut t = Timeline::default();
    assert_eq!(t.state(0, 1000), State::Waiting);
    t.apply(&firmware(0, Step::Asked));
    t.apply(&firmware(40, Step::Served));
    // iPXE waits 2 s (for IPv6) before it asks for its script.
    fetch(&mut t, 2040, 2060, Stage::Script);
    fetch(&mut t, 2100, 4070, Stage::Kernel);
    fetch(&mut t, 4080, 4410, Stage::Initrd);
    assert_eq!(t.stage(), Some(Stage::OsBoot), "the kernel runs");
    assert_eq!(t.state(5000, 5000), State::Booting);
    assert_eq!(t.state(9500, 5000), State::Stalled, "nothing for 5.1 s");
    // The booted OS asks for its address (its DHCP is the end of the
    // kernel's boot, not more of the firmware's DHCP), then its
    // cloud-config.
    t.apply(&ev(9000, Stage::Dhcp, Step::Asked));
    t.apply(&ev(9050, Stage::Dhcp, Step::Served));
    fetch(&mut t, 9300, 9310, Stage::CloudConfig);
    t.apply(&ev(9900, Stage::Booted, Step::Served));
    assert_eq!(t.state(99_999, 5000), State::Booted, "booted never stalls");
    assert_eq!(
        ms(&t, 99_999),
        vec![
            (Stage::Dhcp, 40),
            (Stage::Script, 20),
            (Stage::Kernel, 1970),
            (Stage::Initrd, 330),
            (Stage::OsBoot, 4590),
            (Stage::CloudConfig, 10),
            (Stage::Booted, 0)
        ]
    );
    assert_eq!((t.boots, t.tries, t.started), (1, 1, 0));
}

#[test]
fn a_stage_in_progress_lasts_until_now() {
    let mut t = Timeline::default();
    t.apply(&firmware(0, Step::Served));
    t.apply(&ev(100, Stage::Kernel, Step::Asked));
    assert_eq!(t.stage(), Some(Stage::Kernel));
    assert_eq!(ms(&t, 700), vec![(Stage::Dhcp, 0), (Stage::Kernel, 600)]);
}

#[test]
fn chainloading_is_one_boot_and_keeps_the_firmwares_stages() {
    let mut t = Timeline::default();
    // OVMF's PXE: DHCP, ipxe.efi over TFTP; then iPXE's own DHCP.
    t.apply(&firmware(0, Step::Asked));
    t.apply(&firmware(10, Step::Served));
    fetch(&mut t, 20, 300, Stage::Loader);
    t.apply(&firmware(400, Step::Asked));
    t.apply(&firmware(410, Step::Served));
    fetch(&mut t, 420, 430, Stage::Script);
    assert_eq!((t.boots, t.tries), (1, 1));
    assert_eq!(
        t.stages.keys().copied().collect::<Vec<_>>(),
        [Stage::Dhcp, Stage::Loader, Stage::Script]
    );
}

#[test]
fn a_retry_after_a_failure_is_a_try_of_the_same_boot_and_the_failure_stays_counted() {
    let mut t = Timeline::default();
    for try_no in 0..3u64 {
        let at = try_no * 10_000;
        t.apply(&firmware(at, Step::Served));
        fetch(&mut t, at + 100, at + 200, Stage::Script);
        fetch(&mut t, at + 300, at + 2000, Stage::Kernel);
        t.apply(&ev(at + 2100, Stage::Initrd, Step::Asked));
        t.apply(&not_found(at + 2110, Stage::Initrd));
        assert_eq!(t.state(at + 2200, 60_000), State::Failed);
        assert_eq!(
            t.stage(),
            Some(Stage::Kernel),
            "a failed request is not reached"
        );
    }
    assert_eq!((t.boots, t.tries), (1, 3));
    let f = t.failure.clone().unwrap();
    assert_eq!(
        f.message(),
        "failed at initrd: initrd-file not found (404), 3 tries"
    );
    assert_eq!((f.first_at, f.at), (2110, 22_110));
    // Still failed while the next try is on its way, even when it stalls.
    t.apply(&firmware(30_000, Step::Served));
    fetch(&mut t, 30_100, 30_200, Stage::Kernel);
    assert_eq!(t.state(99_000, 5000), State::Failed);
    // The initrd is back: past it.
    fetch(&mut t, 30_300, 30_400, Stage::Initrd);
    assert_eq!(
        (t.failure.as_ref(), t.state(30_500, 5000)),
        (None, State::Booting)
    );
}

#[test]
fn a_different_failure_replaces_the_last_one() {
    let mut t = Timeline::default();
    t.apply(&firmware(0, Step::Served));
    t.apply(&not_found(10, Stage::Kernel));
    t.apply(&firmware(20, Step::Served));
    t.apply(&not_found(30, Stage::Script));
    let f = t.failure.unwrap();
    assert_eq!((f.stage, f.times), (Stage::Script, 1));
}

#[test]
fn the_same_file_served_again_clears_its_failure_and_a_partly_served_stage_stays() {
    let mut t = Timeline::default();
    t.apply(&firmware(0, Step::Served));
    fetch(&mut t, 10, 20, Stage::Loader);
    let mut missing = not_found(30, Stage::Loader);
    missing.asked = "ldlinux.c32".into();
    t.apply(&missing);
    assert_eq!(t.stage(), Some(Stage::Loader), "pxelinux.0 was served");
    assert_eq!(t.state(40, 1000), State::Failed);
    // Another loader file served is not what failed.
    fetch(&mut t, 50, 60, Stage::Loader);
    assert_eq!(t.state(70, 1000), State::Failed);
    let mut back = ev(80, Stage::Loader, Step::Served);
    back.asked = "ldlinux.c32".into();
    t.apply(&back);
    assert_eq!(t.state(90, 1000), State::Booting);
}

#[test]
fn firmware_dhcp_after_the_os_ran_is_a_new_boot_but_the_oss_own_is_not() {
    let mut t = Timeline::default();
    t.apply(&firmware(0, Step::Served));
    fetch(&mut t, 10, 20, Stage::Kernel);
    fetch(&mut t, 30, 40, Stage::Initrd);
    t.apply(&ev(500, Stage::Dhcp, Step::Served));
    assert_eq!(
        (t.boots, t.tries, t.stage()),
        (1, 1, Some(Stage::OsBoot)),
        "the OS asks for its address"
    );
    assert_eq!(t.stages[&Stage::OsBoot].end, Some(500));
    t.apply(&ev(600, Stage::Booted, Step::Served));
    t.apply(&firmware(5000, Step::Asked));
    assert_eq!((t.boots, t.tries, t.started), (2, 1, 5000), "rebooted");
    assert_eq!(t.stage(), Some(Stage::Dhcp));
}

#[test]
fn a_kernel_that_reboots_before_the_os_asks_is_another_try() {
    let mut t = Timeline::default();
    t.apply(&firmware(0, Step::Served));
    fetch(&mut t, 10, 20, Stage::Kernel);
    fetch(&mut t, 30, 40, Stage::Initrd);
    t.apply(&firmware(3000, Step::Served));
    assert_eq!((t.boots, t.tries), (1, 2));
}

#[test]
fn a_refused_cloud_config_fails_there_after_the_kernel_booted() {
    let mut t = Timeline::default();
    t.apply(&firmware(0, Step::Served));
    fetch(&mut t, 10, 20, Stage::Initrd);
    t.apply(&ev(900, Stage::CloudConfig, Step::Asked));
    t.apply(&ev(
        905,
        Stage::CloudConfig,
        Step::Failed {
            answer: "refused: wrong token (403)".into(),
            fix: Some("reboot it".into()),
        },
    ));
    assert_eq!(t.stage(), Some(Stage::OsBoot));
    assert_eq!(t.stages[&Stage::OsBoot].end, Some(900));
    assert_eq!(t.state(1000, 60_000), State::Failed);
    assert_eq!(
        t.failure.as_ref().unwrap().fix.as_deref(),
        Some("reboot it")
    );
}

#[test]
fn state_names_are_the_apis() {
    for st in [
        State::Waiting,
        State::Booting,
        State::Booted,
        State::Stalled,
        State::Failed,
    ] {
        assert_eq!(serde_json::to_value(st).unwrap(), st.name());
    }
    for s in Stage::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), s.name());
    }
}

#[test]
fn events_out_of_order_keep_the_latest_as_last() {
    let mut t = Timeline::default();
    t.apply(&ev(100, Stage::Dhcp, Step::News));
    t.apply(&ev(50, Stage::Dhcp, Step::News));
    assert_eq!((t.last_at, t.last.as_str()), (100, "dhcp at 100"));
}
