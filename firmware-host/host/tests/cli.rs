//! The binary: `serve` on one end of a pty pair with the rig in this process, and the
//! errors a person sees for bad arguments.

use std::process::{Command, Stdio};
use std::time::Duration;

use medseg_host::link::Link;
use medseg_host::rig::{Rig, RigImage, RigOptions};
use serialport::{SerialPort, TTYPort};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_medseg-host"))
}

fn stderr_of(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn serve_binary_answers_a_rig_over_a_pty() {
    let (master, slave) = TTYPort::pair().unwrap();
    let path = slave.name().unwrap();
    let mut child = bin()
        .args(["serve", "--port", &path, "--baud", "3000000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let link = Link::from_port(Box::new(master), "pty master", 3_000_000, true).unwrap();
    let mut opts = RigOptions::for_baud(3_000_000);
    // The binary loads the model before it opens the port.
    opts.reply_timeout = Duration::from_secs(2);
    let mut rig = Rig::new(link, opts);
    let sample = &medseg_runtime::demo::SAMPLES[1];
    let img = image::load_from_memory(sample.image).unwrap().to_luma8();
    let report = rig
        .handshake()
        .and_then(|_| rig.send_image(&RigImage::gray8("sample", &img).unwrap()));
    let _ = child.kill();
    let _ = child.wait();
    let result = report.unwrap().outcome.unwrap();
    assert!(result.areas[0] > 100, "{result:?}");
    drop(slave);
}

#[test]
fn bad_arguments_get_errors_that_name_the_value() {
    let e = stderr_of(&["serve", "--port", "/dev/medseg-no-such-port"]);
    assert!(
        e.contains("/dev/medseg-no-such-port") && e.contains("list-ports"),
        "{e}"
    );
    let e = stderr_of(&["rig", "--port", "/dev/null", "--images", "/no/such/folder"]);
    assert!(e.contains("/no/such/folder"), "{e}");
    let e = stderr_of(&["serve", "--port", "x", "--display", "320by240"]);
    assert!(e.contains("320by240"), "{e}");
    let e = stderr_of(&["serve", "--port", "x", "--screenshot", "a.png"]);
    assert!(e.contains("--display"), "{e}");
    let e = stderr_of(&["serve", "--port", "x", "--model", "/no/model.onnx"]);
    assert!(e.contains("/no/model.onnx"), "{e}");
}

#[test]
fn help_has_examples() {
    for cmd in ["serve", "rig", "list-ports", "bench-link", "screenshot"] {
        let out = bin().args([cmd, "--help"]).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Example"), "{cmd} --help has no example");
    }
}
