//! `medseg segment` on scans: a DICOM CT slice holding a demo slice's gray levels segments
//! exactly as the PNG does, with areas in mm^2 from its pixel spacing; a multi-frame file
//! gives one result per frame; BMP and TIFF read as PNG does; a batch goes on past a broken
//! file, lists it in summary.csv and exits non-zero.

use std::path::Path;

mod common;

use common::{SPACING, ct_dicom, medseg};
use medseg_runtime::demo::SAMPLES;

fn ct_file(frames: &[image::GrayImage], path: &Path) {
    std::fs::write(path, ct_dicom(frames)).unwrap();
}

fn sample(i: usize) -> image::GrayImage {
    image::load_from_memory(SAMPLES[i].image)
        .unwrap()
        .into_luma8()
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn mask(path: &Path) -> Vec<u8> {
    image::open(path).unwrap().into_luma8().into_raw()
}

#[test]
fn a_dicom_slice_segments_as_its_png_with_areas_in_mm2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    sample(0).save(d.join("slice.png")).unwrap();
    ct_file(&[sample(0)], &d.join("slice_ct.dcm"));
    // The same pixels as BMP and TIFF.
    sample(0).save(d.join("slice_bmp.bmp")).unwrap();
    sample(0).save(d.join("slice_tif.tiff")).unwrap();
    let out = d.join("out");
    let (ok, stdout, stderr) = medseg(&[
        "segment",
        d.join("slice.png").to_str().unwrap(),
        d.join("slice_ct.dcm").to_str().unwrap(),
        d.join("slice_bmp.bmp").to_str().unwrap(),
        d.join("slice_tif.tiff").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    let png_mask = mask(&out.join("slice_mask.png"));
    assert!(
        png_mask.contains(&1),
        "the demo slice shows a vertebral body"
    );
    for stem in ["slice_ct", "slice_bmp", "slice_tif"] {
        assert_eq!(
            mask(&out.join(format!("{stem}_mask.png"))),
            png_mask,
            "{stem}"
        );
    }
    let png = report(&out.join("slice.json"));
    let ct = report(&out.join("slice_ct.json"));
    assert!(png["pixel_spacing_mm"].is_null());
    assert_eq!(
        ct["pixel_spacing_mm"],
        serde_json::json!([SPACING.0, SPACING.1])
    );
    let (png_bone, ct_bone) = (&png["classes"][0], &ct["classes"][0]);
    assert!(png_bone["area_mm2"].is_null());
    let px = ct_bone["area_pixels"].as_f64().unwrap();
    assert_eq!(png_bone["area_pixels"].as_f64().unwrap(), px);
    let mm2 = ct_bone["area_mm2"].as_f64().unwrap();
    assert!(
        (mm2 - px * SPACING.0 * SPACING.1).abs() < 1e-6,
        "{mm2} vs {px} px"
    );
    assert!(stdout.contains("mm^2"), "{stdout}");
    // Centroid inside the box, and an outline whose points lie on the box's edges or inside.
    let [x0, y0, x1, y1] = [0, 1, 2, 3].map(|i| ct_bone["bbox"][i].as_f64().unwrap());
    let c = &ct_bone["centroid"];
    let (cx, cy) = (c[0].as_f64().unwrap(), c[1].as_f64().unwrap());
    assert!(
        (x0..=x1).contains(&cx) && (y0..=y1).contains(&cy),
        "{c} in {x0},{y0},{x1},{y1}"
    );
    let outline = ct_bone["contours"][0].as_array().unwrap();
    assert!(outline.len() >= 4, "{outline:?}");
    for p in outline {
        let (x, y) = (p[0].as_f64().unwrap(), p[1].as_f64().unwrap());
        assert!((x0..=x1).contains(&x) && (y0..=y1).contains(&y), "{p}");
    }
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 5, "{summary}");
    assert!(summary.contains("cancellous_bone_area_mm2"), "{summary}");
}

#[test]
fn a_multi_frame_file_gives_each_frame_or_the_one_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let frames = [sample(0), sample(1)];
    ct_file(&frames, &d.join("cine.dcm"));
    let out = d.join("out");
    let (ok, stdout, stderr) = medseg(&[
        "segment",
        d.join("cine.dcm").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    for (i, frame) in frames.iter().enumerate() {
        let png = d.join(format!("frame{i}.png"));
        frame.save(&png).unwrap();
        let single = d.join(format!("single{i}"));
        let (ok, stdout, stderr) = medseg(&[
            "segment",
            png.to_str().unwrap(),
            "--out",
            single.to_str().unwrap(),
        ]);
        assert!(ok, "{stdout}{stderr}");
        assert_eq!(
            mask(&out.join(format!("cine_f{:03}_mask.png", i + 1))),
            mask(&single.join(format!("frame{i}_mask.png")))
        );
    }
    let only = d.join("only");
    let (ok, stdout, stderr) = medseg(&[
        "segment",
        d.join("cine.dcm").to_str().unwrap(),
        "--slice",
        "1",
        "--out",
        only.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(only.join("cine_f002_mask.png").is_file());
    assert!(!only.join("cine_f001_mask.png").exists());
    let (ok, _, stderr) = medseg(&[
        "segment",
        d.join("cine.dcm").to_str().unwrap(),
        "--slice",
        "2",
        "--out",
        only.to_str().unwrap(),
    ]);
    assert!(
        !ok && stderr.contains("cine.dcm") && stderr.contains("--slice 2"),
        "{stderr}"
    );
}

#[test]
fn a_batch_goes_past_broken_files_and_lists_them_in_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ct_file(&[sample(0)], &d.join("good.dcm"));
    let bytes = std::fs::read(d.join("good.dcm")).unwrap();
    std::fs::write(d.join("cut.dcm"), &bytes[..bytes.len() / 2]).unwrap();
    std::fs::write(d.join("empty.dcm"), b"").unwrap();
    std::fs::write(d.join("notes.png"), b"not a picture").unwrap();
    let out = d.join("out");
    let (ok, stdout, stderr) = medseg(&[
        "segment",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!ok, "{stdout}{stderr}");
    assert!(stderr.contains("3 of 4 input(s) failed"), "{stderr}");
    for name in ["cut.dcm", "empty.dcm", "notes.png"] {
        assert!(stderr.contains(name), "{name} not named in {stderr}");
    }
    assert!(out.join("good_mask.png").is_file());
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{summary}");
    assert_eq!(
        rows.iter().filter(|r| r.contains(",error,")).count(),
        3,
        "{summary}"
    );
    assert!(rows.iter().any(|r| r.contains("good.dcm,ok,")), "{summary}");
}

#[test]
fn dicom_seg_output_refers_to_the_file_and_holds_each_frames_mask() {
    use dicom_dictionary_std::{tags, uids};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    ct_file(&[sample(0), sample(1)], &d.join("ct.dcm"));
    let out = d.join("out");
    let (ok, stdout, stderr) = medseg(&[
        "segment",
        d.join("ct.dcm").to_str().unwrap(),
        "--dicom-seg",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("DICOM SEG"), "{stdout}");
    let seg = dicom_object::open_file(out.join("ct_seg.dcm")).unwrap();
    let text = |tag| {
        seg.element(tag)
            .unwrap()
            .to_str()
            .unwrap()
            .trim_end_matches('\0')
            .to_string()
    };
    assert_eq!(text(tags::SOP_CLASS_UID), uids::SEGMENTATION_STORAGE);
    assert_eq!(text(tags::SEGMENTATION_TYPE), "BINARY");
    assert_eq!(text(tags::STUDY_INSTANCE_UID), "1.2.826.0.1.3680043.2.9.2");
    assert_eq!(
        text(tags::FRAME_OF_REFERENCE_UID),
        "1.2.826.0.1.3680043.2.9.4"
    );
    assert_eq!(text(tags::PATIENT_ID), "P01");
    assert_eq!(text(tags::NUMBER_OF_FRAMES), "2");
    // One segment (the demo model's one class), one frame per source frame, in order.
    let bits = seg.element(tags::PIXEL_DATA).unwrap().to_bytes().unwrap();
    for frame in 0..2 {
        let want = mask(&out.join(format!("ct_f{:03}_mask.png", frame + 1)));
        let n0 = frame * want.len();
        let got: Vec<u8> = (0..want.len())
            .map(|p| (bits[(n0 + p) / 8] >> ((n0 + p) % 8)) & 1)
            .collect();
        assert_eq!(got, want, "frame {}", frame + 1);
    }
    let frames = seg
        .element(tags::PER_FRAME_FUNCTIONAL_GROUPS_SEQUENCE)
        .unwrap()
        .items()
        .unwrap();
    let source = frames[1]
        .element(tags::DERIVATION_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0]
        .element(tags::SOURCE_IMAGE_SEQUENCE)
        .unwrap()
        .items()
        .unwrap()[0]
        .clone();
    let uid = source
        .element(tags::REFERENCED_SOP_INSTANCE_UID)
        .unwrap()
        .to_str()
        .unwrap();
    assert_eq!(uid.trim_end_matches('\0'), "1.2.826.0.1.3680043.2.9.1");
    assert_eq!(
        source
            .element(tags::REFERENCED_FRAME_NUMBER)
            .unwrap()
            .to_int::<u32>()
            .unwrap(),
        2
    );

    // A NIfTI-free case the SEG cannot take: a file without geometry is named, the masks
    // are still written, and the run says so.
    let bare = d.join("bare.dcm");
    let mut bytes = std::fs::read(d.join("ct.dcm")).unwrap();
    let at = bytes
        .windows(4)
        .position(|w| w == [0x20, 0x00, 0x32, 0x00])
        .unwrap();
    bytes[at + 2] = 0x33; // ImagePositionPatient (0020,0032) becomes an unknown (0020,0033)
    std::fs::write(&bare, bytes).unwrap();
    let out2 = d.join("out2");
    let (ok, stdout, stderr) = medseg(&[
        "segment",
        bare.to_str().unwrap(),
        "--dicom-seg",
        "--out",
        out2.to_str().unwrap(),
    ]);
    assert!(!ok, "{stdout}{stderr}");
    assert!(
        stderr.contains("bare") && stderr.contains("ImagePositionPatient"),
        "{stderr}"
    );
    assert!(out2.join("bare_f001_mask.png").is_file());
}
