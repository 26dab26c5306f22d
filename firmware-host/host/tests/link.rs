//! The whole path over real pseudo-terminals: rig -> relay -> host -> runtime -> rig.

mod common;

use std::time::Duration;

use common::{Harness, expected, images, model, same, same_or_coarser, serve_opts};
use medseg_host::fault::Faults;

#[test]
fn clean_link_answers_every_format_with_the_runtimes_segmentation_and_drives_the_screen() {
    let imgs = images();
    let mut opts = serve_opts();
    opts.display = Some((320, 240));
    let dir = tempfile::tempdir().unwrap();
    let shot = dir.path().join("screen.png");
    opts.screenshot = Some(shot.clone());
    let mut h = Harness::start(model(), Faults::CLEAN, 1, opts, |o| {
        o.display = Some((320, 240))
    });
    for img in &imgs {
        let r = h.rig.send_image(img).unwrap();
        let got = r.outcome.unwrap_or_else(|e| panic!("{}: {e}", img.name));
        assert!(same(&got, &expected(img)), "{}: {got:?}", img.name);
        assert!(got.areas[0] > 0 && !got.contour.is_empty());
        assert_eq!(r.retransmits, 0);
    }
    // The rig's screen, rebuilt from DisplayChunks, is the host's screenshot of the last image.
    assert!(
        h.rig.wait_screen().unwrap(),
        "the last screen never completed"
    );
    assert_eq!(h.rig.screens_received, imgs.len() as u64);
    let host_screen = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(host_screen.dimensions(), (320, 240));
    assert!(
        h.rig.screen().unwrap().to_rgb() == host_screen,
        "rig screen differs from the host's"
    );
    let done = h.finish();
    assert_eq!(done.host.images, imgs.len() as u64);
    assert_eq!(done.host.display_frames, imgs.len() as u64);
    assert_eq!(done.host_link.crc_failures, 0);
}

#[test]
fn faulty_link_completes_or_fails_each_image_and_never_mixes_results() {
    let imgs = images();
    let want: Vec<_> = imgs.iter().map(expected).collect();
    // All results must differ, or a mix-up could go unnoticed.
    for i in 0..want.len() {
        for j in i + 1..want.len() {
            assert!(
                !same(&want[i], &want[j]),
                "images {i} and {j} segment alike"
            );
        }
    }
    let faults = Faults {
        flip: 0.002,
        drop: 0.001,
        duplicate: 0.001,
        stall: 0.01,
        stall_for: Duration::from_millis(120),
    };
    let mut h = Harness::start(model(), faults, 42, serve_opts(), |_| {});
    let (mut ok, mut failed) = (0, 0);
    for round in 0..2 {
        for (img, want) in imgs.iter().zip(&want) {
            let r = h.rig.send_image(img).unwrap();
            match r.outcome {
                Ok(got) => {
                    assert!(
                        same_or_coarser(&got, want),
                        "round {round}, {}: wrong result {got:?}",
                        img.name
                    );
                    ok += 1;
                }
                Err(_) => failed += 1,
            }
        }
    }
    assert!(
        ok >= imgs.len(),
        "only {ok} of {} images completed",
        ok + failed
    );
    // Faults off: the same host, still running, answers correctly.
    h.relay.set_faults(Faults::CLEAN);
    let r = h.rig.send_image(&imgs[1]).unwrap();
    assert!(same(&r.outcome.unwrap(), &want[1]));
    let done = h.finish();
    eprintln!(
        "{ok} ok, {failed} failed; host {:?}; relay rig->host {:?}, host->rig {:?}",
        done.host_link, done.rig_to_host, done.host_to_rig
    );
    let injected =
        done.rig_to_host.flipped + done.rig_to_host.dropped + done.rig_to_host.duplicated;
    assert!(injected > 10, "the relay injected only {injected} faults");
    assert!(done.host_link.crc_failures + done.host_link.bad_frames > 0);
    assert!(done.host.nacks > 0, "no gap was ever reported");
}

#[test]
fn a_rig_that_resets_mid_transfer_gets_right_results_afterwards() {
    let imgs = images();
    // Image 1 is cut after 5 chunks; the rig reboots, handshakes and restarts ids at 1.
    let mut h = Harness::start(model(), Faults::CLEAN, 7, serve_opts(), |o| {
        o.chunk_size = 256;
        o.adapt = false;
        o.reset_after = Some((1, 5));
    });
    for (i, img) in imgs.iter().take(3).enumerate() {
        let r = h.rig.send_image(img).unwrap();
        assert_eq!(r.restarts, u32::from(i == 1), "{}", img.name);
        let got = r.outcome.unwrap_or_else(|e| panic!("{}: {e}", img.name));
        assert!(same(&got, &expected(img)), "{}", img.name);
    }
    let done = h.finish();
    // Two hellos (start, reboot) and the cut transfer dropped by the restarted one.
    assert_eq!(done.host.images, 3);
}

#[test]
fn oversize_images_are_refused_and_reported_failed() {
    let imgs = images();
    let mut opts = serve_opts();
    opts.max_image_bytes = 1000;
    let mut h = Harness::start(model(), Faults::CLEAN, 3, opts, |_| {});
    let r = h.rig.send_image(&imgs[0]).unwrap();
    let why = r.outcome.unwrap_err();
    assert!(why.contains("at most 1000"), "{why}");
    h.finish();
}

#[test]
fn a_bogus_screen_size_in_hello_is_ignored_and_images_still_complete() {
    let imgs = images();
    // 60000x50000 would be a 6 GB frame buffer if the host believed it.
    let mut h = Harness::start(model(), Faults::CLEAN, 5, serve_opts(), |o| {
        o.display = Some((60_000, 50_000))
    });
    let r = h.rig.send_image(&imgs[0]).unwrap();
    assert!(same(&r.outcome.unwrap(), &expected(&imgs[0])));
    let done = h.finish();
    assert_eq!(done.host.display_frames, 0);
}
