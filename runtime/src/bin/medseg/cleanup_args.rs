//! The clean-up flags `segment` and `eval` share: they override the model card's clean-up.

use medseg_runtime::{Cleanup, Segmenter};

#[derive(clap::Args)]
pub struct CleanupArgs {
    /// Drop islands of a class smaller than PX pixels of the model's input grid (scaled to
    /// each image's size). Given with or without --fill-holes, replaces the card's clean-up.
    #[arg(long, value_name = "PX")]
    min_component: Option<u32>,
    /// Fill background that one class encloses. Replaces the card's clean-up (with
    /// --min-component if given, else none).
    #[arg(long)]
    fill_holes: bool,
    /// No clean-up, whatever the model card says: the network's raw argmax.
    #[arg(long, conflicts_with_all = ["min_component", "fill_holes"])]
    no_cleanup: bool,
}

impl CleanupArgs {
    /// The segmenter with the clean-up these flags ask for (the card's when none is given).
    pub fn configure(&self, seg: Segmenter) -> Segmenter {
        if self.no_cleanup {
            return seg.with_cleanup(Cleanup::default());
        }
        if self.min_component.is_none() && !self.fill_holes {
            return seg;
        }
        seg.with_cleanup(Cleanup {
            min_component_px: self.min_component.unwrap_or(0),
            fill_holes: self.fill_holes,
        })
    }
}

/// One line saying what clean-up runs, for the logs of `segment` and `eval`.
pub fn describe(cleanup: Cleanup) -> String {
    match (cleanup.min_component_px, cleanup.fill_holes) {
        (0, false) => "clean-up: none".into(),
        (0, true) => "clean-up: holes filled".into(),
        (px, false) => format!("clean-up: islands under {px} px dropped"),
        (px, true) => format!("clean-up: islands under {px} px dropped, holes filled"),
    }
}
