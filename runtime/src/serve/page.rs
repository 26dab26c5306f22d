//! The one page `medseg serve` offers: pick or drop an image, see the overlay and each
//! class's area, download the mask and the JSON. Plain HTML and script, no framework and
//! nothing fetched from outside: the bedside machine may have no network.

pub const PAGE: &str = include_str!("page.html");
